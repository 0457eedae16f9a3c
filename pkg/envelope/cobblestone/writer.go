package cobblestone

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Writer encrypts a message as a stream. It is not safe for concurrent use.
// Close must be called to seal the final chunk.
type Writer struct {
	dst      io.Writer
	st       *aeadState
	conc     int
	perBatch int // chunks per batch
	depth    int // batches in flight at most
	slots    int // batches taken so far (at most depth+1)

	cur   *batch   // batch being filled, nil if none
	fill  int      // plaintext bytes in chunk cur.full
	free  []*batch // batches ready for reuse
	queue []*batch // dispatched batches, oldest first

	next  uint64 // counter of the next batch's first chunk
	total int64  // plaintext bytes accepted
	err   error  // sticky
}

// NewWriter writes the salt || commitment header for a fresh salt to w and
// returns a Writer that encrypts the message under inputKey and context.
// It returns an error wrapping ErrInvalidKeySize if inputKey is not KeySize
// bytes. Only the AEAD's key schedule and the base nonce are kept; the
// derived key is zeroed.
func NewWriter(w io.Writer, inputKey, context []byte, opts ...Option) (*Writer, error) {
	if w == nil {
		return nil, errors.New("cobblestone: nil io.Writer")
	}
	o := buildOptions(opts)
	st, header, err := newHeader(inputKey, context, &o)
	if err != nil {
		return nil, err
	}
	if err := writeAll(w, header); err != nil {
		return nil, err
	}
	return newWriter(w, st, &o), nil
}

// NewRawWriter returns a Writer for raw mode (the spec's appendix): chunks
// are sealed with key directly and no header is written. key must be used for
// one message only. The caller may Destroy key once NewRawWriter returns.
func NewRawWriter(w io.Writer, key *MessageKey, opts ...Option) (*Writer, error) {
	if w == nil {
		return nil, errors.New("cobblestone: nil io.Writer")
	}
	o := buildOptions(opts)
	st, err := newAEADState(key)
	if err != nil {
		return nil, err
	}
	return newWriter(w, st, &o), nil
}

func newWriter(w io.Writer, st *aeadState, o *options) *Writer {
	wr := &Writer{dst: w, st: st, conc: o.concurrency, perBatch: 1, depth: 1}
	if wr.conc > 1 {
		wr.perBatch, wr.depth = batchChunks, wr.conc*inFlightPerWorker
	}
	return wr
}

// Write encrypts p. Full chunks are sealed and written as they fill up. With
// concurrency above 1 they are sealed in parallel: chunks are copied into
// the Writer's batches, except that from a large p all but the last
// depth×256 KiB are sealed straight from p, and Write waits for those before
// returning (the copied tail keeps the workers busy meanwhile). A partial
// chunk is kept until it fills up or Close. Errors are sticky. It returns an
// error wrapping ErrTooLarge if the message would exceed MaxPlaintextSize.
func (w *Writer) Write(p []byte) (n int, err error) {
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > MaxPlaintextSize-w.total {
		w.err = fmt.Errorf("%w: message would exceed %d bytes", ErrTooLarge, int64(MaxPlaintextSize))
		return 0, w.err
	}
	direct := false
	for len(p) > 0 && err == nil {
		var c int
		if w.conc > 1 && w.fill == 0 && len(p)/ChunkSize > w.depth*w.perBatch {
			c, err = w.dispatchDirect(p, len(p)/ChunkSize-w.depth*w.perBatch)
			direct = true
		} else {
			c, err = w.buffer(p)
		}
		p = p[c:]
		n += c
		w.total += int64(c)
	}
	if direct {
		// Batches sealing straight from p must be done before Write returns.
		// Usually the copied tail has pushed them out already.
		for err == nil && slices.ContainsFunc(w.queue, (*batch).direct) {
			err = w.flushOldest()
		}
		if err != nil {
			w.abandon()
		}
	}
	return n, err
}

// buffer adds the start of p to the current batch and returns how much it
// took. With concurrency 1, a whole chunk at a chunk boundary is sealed
// straight from p.
func (w *Writer) buffer(p []byte) (int, error) {
	if w.cur == nil {
		if err := w.startBatch(); err != nil {
			return 0, err
		}
	}
	b := w.cur
	off := b.full * EncryptedChunkSize
	var c int
	if w.conc == 1 && w.fill == 0 && len(p) >= ChunkSize {
		w.st.nonce(&b.nonce, b.first+uint64(b.full))
		w.st.aead.Seal(b.buf[off:off], b.nonce[:], p[:ChunkSize], nil)
		c = ChunkSize
		b.full++
		b.done = b.full
	} else {
		c = copy(b.buf[off+w.fill:off+ChunkSize], p)
		w.fill += c
		if w.fill == ChunkSize {
			b.full++
			w.fill = 0
		}
	}
	if b.full == w.perBatch {
		if err := w.dispatch(); err != nil {
			return 0, err
		}
	}
	return c, nil
}

// dispatchDirect hands up to perBatch (and at most max) full chunks of p to
// a goroutine that seals them straight from p, and returns how many bytes it
// took.
func (w *Writer) dispatchDirect(p []byte, max int) (int, error) {
	if w.cur != nil && w.cur.full > 0 {
		if err := w.dispatch(); err != nil {
			return 0, err
		}
	}
	if w.cur == nil {
		if err := w.startBatch(); err != nil {
			return 0, err
		}
	}
	k := min(max, w.perBatch)
	w.cur.src = p[:k*ChunkSize]
	w.cur.full = k
	if err := w.dispatch(); err != nil {
		return 0, err
	}
	return k * ChunkSize, nil
}

// ReadFrom encrypts everything read from r until io.EOF, reading straight
// into the chunk buffers. It does not Close the Writer.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if w.err != nil {
			return total, w.err
		}
		if w.cur == nil {
			if err := w.startBatch(); err != nil {
				return total, err
			}
		}
		want := ChunkSize - w.fill
		if room := MaxPlaintextSize - w.total; int64(want) > room {
			want = int(room)
		}
		if want == 0 {
			var probe [1]byte
			n, err := io.ReadFull(r, probe[:])
			if n > 0 {
				w.err = fmt.Errorf("%w: message would exceed %d bytes", ErrTooLarge, int64(MaxPlaintextSize))
				return total, w.err
			}
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		b := w.cur
		off := b.full*EncryptedChunkSize + w.fill
		n, err := io.ReadFull(r, b.buf[off:off+want])
		w.fill += n
		w.total += int64(n)
		total += int64(n)
		if w.fill == ChunkSize {
			b.full++
			w.fill = 0
			if b.full == w.perBatch {
				if derr := w.dispatch(); derr != nil {
					return total, derr
				}
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// Close seals the final, possibly empty, short chunk, writes every pending
// chunk and waits for them. It does not close the underlying io.Writer. After
// Close, Write, ReadFrom and Close return an error.
func (w *Writer) Close() error {
	if w.err != nil {
		err := w.err
		w.err = errWriterClosed
		w.release()
		return err
	}
	err := w.finish()
	w.err = errWriterClosed
	w.release()
	return err
}

func (w *Writer) finish() error {
	if w.cur == nil {
		if err := w.startBatch(); err != nil {
			return err
		}
	}
	w.cur.final = true
	w.cur.tail = w.fill
	if err := w.dispatch(); err != nil {
		return err
	}
	for len(w.queue) > 0 {
		if err := w.flushOldest(); err != nil {
			return err
		}
	}
	return nil
}

// abandon waits for the batches still in flight after an error and drops
// them, so that no goroutine touches the caller's memory or the Writer later.
func (w *Writer) abandon() {
	cancel(w.queue)
	clear(w.queue)
	w.queue = w.queue[:0]
}

// release recycles the buffers once no goroutine uses them. They hold
// ciphertext and at most one partial chunk of plaintext, which is cleared.
func (w *Writer) release() {
	w.abandon()
	if w.cur != nil {
		clear(w.cur.buf)
		putBatches(w.cur)
	}
	putBatches(w.free...)
	w.cur, w.free, w.queue = nil, nil, nil
}

// startBatch makes w.cur an empty batch, reusing a free one, taking up to
// depth+1 from the pool, or else waiting for the oldest in flight.
func (w *Writer) startBatch() error {
	var b *batch
	switch {
	case len(w.free) > 0:
		b = w.free[len(w.free)-1]
		w.free = w.free[:len(w.free)-1]
	case w.slots < w.depth+1 || len(w.queue) == 0:
		b = getBatch(w.perBatch)
		w.slots++
	default:
		if err := w.flushOldest(); err != nil {
			return err
		}
		b = w.free[len(w.free)-1]
		w.free = w.free[:len(w.free)-1]
	}
	b.reset(w.next)
	w.cur = b
	w.fill = 0
	return nil
}

// dispatch hands w.cur over for sealing: inline with concurrency 1, else to a
// new goroutine, keeping at most depth batches in flight.
func (w *Writer) dispatch() error {
	b := w.cur
	w.cur = nil
	w.next = b.first + uint64(b.chunks())
	if w.conc == 1 {
		w.st.seal(b)
		if err := w.write(b); err != nil {
			return err
		}
		w.free = append(w.free, b)
		return nil
	}
	for len(w.queue) >= w.depth {
		if err := w.flushOldest(); err != nil {
			return err
		}
	}
	w.queue = append(w.queue, b)
	w.st.dispatch(b, false)
	return nil
}

// flushOldest waits for the oldest batch in flight, writes it and frees it.
func (w *Writer) flushOldest() error {
	w.st.wait(w.queue, false)
	b := w.queue[0]
	copy(w.queue, w.queue[1:])
	w.queue[len(w.queue)-1] = nil
	w.queue = w.queue[:len(w.queue)-1]
	if err := w.write(b); err != nil {
		return err
	}
	w.free = append(w.free, b)
	return nil
}

func (w *Writer) write(b *batch) error {
	if err := writeAll(w.dst, b.buf[:b.sealedLen()]); err != nil {
		w.err = err
		return err
	}
	return nil
}

func writeAll(w io.Writer, p []byte) error {
	n, err := w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("cobblestone: writing ciphertext: %w", err)
	}
	return nil
}
