package cobblestone

import (
	"errors"
	"fmt"
	"io"
)

// Reader decrypts a message as a stream and returns only authenticated
// plaintext. It is not safe for concurrent use.
type Reader struct {
	src      io.Reader
	st       *aeadState
	conc     int
	perBatch int // chunks per batch
	depth    int // batches read ahead

	cur   *batch   // batch being served, nil if none
	chunk int      // chunk of cur being served
	pos   int      // offset in that chunk's plaintext
	free  []*batch // batches ready for reuse
	queue []*batch // read and dispatched batches, oldest first

	next    uint64 // counter of the next chunk to read
	srcDone bool   // the source hit EOF or an error: no more batches
	err     error  // sticky; io.EOF after the final chunk
}

// NewReader reads the HeaderSize-byte header from r and checks its commitment
// against inputKey and context. It returns an error wrapping
// ErrInvalidKeySize, ErrTruncated (short header) or ErrCommitment before any
// chunk is read.
func NewReader(r io.Reader, inputKey, context []byte, opts ...Option) (*Reader, error) {
	if len(inputKey) != KeySize {
		return nil, fmt.Errorf("%w: input key is %d bytes, want %d", ErrInvalidKeySize, len(inputKey), KeySize)
	}
	if r == nil {
		return nil, errors.New("cobblestone: nil io.Reader")
	}
	var header [HeaderSize]byte
	if n, err := io.ReadFull(r, header[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: header is %d bytes, want %d", ErrTruncated, n, HeaderSize)
		}
		return nil, fmt.Errorf("cobblestone: reading header: %w", err)
	}
	st, err := openHeader(inputKey, context, header[:])
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return newReader(r, st, &o), nil
}

// NewRawReader returns a Reader for raw mode (the spec's appendix): r holds
// only the chunks, opened with key directly; no commitment is checked. The
// caller may Destroy key once NewRawReader returns.
func NewRawReader(r io.Reader, key *MessageKey, opts ...Option) (*Reader, error) {
	if r == nil {
		return nil, errors.New("cobblestone: nil io.Reader")
	}
	st, err := newAEADState(key)
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return newReader(r, st, &o), nil
}

func newReader(r io.Reader, st *aeadState, o *options) *Reader {
	rd := &Reader{src: r, st: st, conc: o.concurrency, perBatch: 1, depth: 1}
	if rd.conc > 1 {
		rd.perBatch, rd.depth = batchChunks, rd.conc*inFlightPerWorker
	}
	return rd
}

// Read reads authenticated plaintext. At the end of a valid message it
// returns io.EOF; otherwise it returns an error wrapping ErrAuthentication,
// ErrTruncated, ErrTooLarge or the source's error, after at most the valid
// prefix of the message. Errors are sticky.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, r.err
	}
	for r.advance() {
		n := 0
		for n < len(p) && r.chunk < r.cur.done {
			plain := r.cur.plaintext(r.chunk)
			c := copy(p[n:], plain[r.pos:])
			n += c
			r.pos += c
			if r.pos == len(plain) {
				r.chunk++
				r.pos = 0
			}
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, r.err
}

// WriteTo writes the authenticated plaintext to w until the end of the
// message. It returns nil at the end of a valid message, the Reader's error,
// or w's error.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.advance() {
		plain := r.cur.plaintext(r.chunk)[r.pos:]
		if len(plain) > 0 {
			n, err := w.Write(plain)
			total += int64(n)
			r.pos += n
			if err == nil && n < len(plain) {
				err = io.ErrShortWrite
			}
			if err != nil {
				return total, err
			}
		}
		r.chunk++
		r.pos = 0
	}
	if r.err == io.EOF {
		return total, nil
	}
	return total, r.err
}

// advance makes sure r.cur has a chunk left to serve, fetching batches as
// needed. It returns false, with r.err set, at the end or on error.
func (r *Reader) advance() bool {
	for r.err == nil {
		if r.cur != nil {
			if r.chunk < r.cur.done {
				return true
			}
			b := r.cur
			r.cur = nil
			switch {
			case b.err != nil:
				r.err = b.err
			case b.final:
				r.err = io.EOF
			}
			r.free = append(r.free, b)
			continue
		}
		b := r.nextBatch()
		if b == nil {
			// Unreachable: the source ends only in a batch that carries the
			// final chunk or an error.
			r.err = fmt.Errorf("%w: missing final short chunk", ErrTruncated)
			return false
		}
		r.cur, r.chunk, r.pos = b, 0, 0
	}
	r.release()
	return false
}

// release recycles the buffers once the stream is over. Batches read ahead
// may still be in flight; they are left to the garbage collector.
func (r *Reader) release() {
	putBatches(r.cur)
	putBatches(r.free...)
	r.cur, r.free, r.queue = nil, nil, nil
}

// nextBatch reads ahead up to depth batches and returns the oldest, opened.
func (r *Reader) nextBatch() *batch {
	for !r.srcDone && len(r.queue) < r.depth {
		b := r.getBatch()
		r.readBatch(b)
		r.queue = append(r.queue, b)
		if r.conc > 1 {
			r.st.dispatch(b, true)
		}
	}
	if len(r.queue) == 0 {
		return nil
	}
	if r.conc > 1 {
		r.st.wait(r.queue, true)
	} else {
		r.st.open(r.queue[0])
	}
	b := r.queue[0]
	copy(r.queue, r.queue[1:])
	r.queue[len(r.queue)-1] = nil
	r.queue = r.queue[:len(r.queue)-1]
	return b
}

func (r *Reader) getBatch() *batch {
	if len(r.free) > 0 {
		b := r.free[len(r.free)-1]
		r.free = r.free[:len(r.free)-1]
		return b
	}
	return getBatch(r.perBatch)
}

// readBatch fills b with up to perBatch chunks of ciphertext. A short read
// means the source ended, so its last piece must be the final short chunk.
func (r *Reader) readBatch(b *batch) {
	b.reset(r.next)
	n, err := io.ReadFull(r.src, b.buf[:r.perBatch*EncryptedChunkSize])
	b.full = n / EncryptedChunkSize
	rem := n % EncryptedChunkSize
	switch {
	case err == nil:
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		r.srcDone = true
		switch {
		case rem >= TagSize:
			b.final = true
			b.tail = rem
		case rem == 0:
			b.err = fmt.Errorf("%w: missing final short chunk %d", ErrTruncated, r.next+uint64(b.full))
		default:
			b.err = fmt.Errorf("%w: final chunk of %d bytes is shorter than a tag", ErrTruncated, rem)
		}
	default:
		r.srcDone = true
		b.err = fmt.Errorf("cobblestone: reading ciphertext: %w", err)
	}
	r.next += uint64(b.chunks())
}
