package cobblestone

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReaderAt decrypts arbitrary ranges of a message held by an io.ReaderAt,
// touching only the chunks that overlap each range. It is safe for concurrent
// use, like any io.ReaderAt.
type ReaderAt struct {
	src    io.ReaderAt
	st     *aeadState
	base   int64  // offset of chunk 0 in src
	ctSize int64  // length of the chunk stream
	size   int64  // plaintext length implied by ctSize, unauthenticated until sizeOK
	last   uint64 // counter of the final chunk
	conc   int

	mu      sync.Mutex
	sizeOK  bool  // the final chunk authenticated
	sizeErr error // the final chunk failed to authenticate
}

// chunkBuf is the scratch space of one goroutine decrypting one chunk.
type chunkBuf struct {
	ct    [EncryptedChunkSize]byte
	nonce [NonceSize]byte
}

var chunkBufPool = sync.Pool{New: func() any { return new(chunkBuf) }}

// NewReaderAt returns a ReaderAt over the size-byte ciphertext in r, header
// included. It reads only the header and checks the commitment, then the
// length shape, returning an error wrapping ErrInvalidKeySize, ErrTruncated,
// ErrCommitment or ErrTooLarge. No chunk is decrypted.
func NewReaderAt(r io.ReaderAt, size int64, inputKey, context []byte, opts ...Option) (*ReaderAt, error) {
	if len(inputKey) != KeySize {
		return nil, fmt.Errorf("%w: input key is %d bytes, want %d", ErrInvalidKeySize, len(inputKey), KeySize)
	}
	if r == nil {
		return nil, errors.New("cobblestone: nil io.ReaderAt")
	}
	if size < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrTruncated, size, HeaderSize)
	}
	var header [HeaderSize]byte
	if n, err := r.ReadAt(header[:], 0); n < HeaderSize {
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("%w: header is %d bytes, want %d", ErrTruncated, n, HeaderSize)
		}
		return nil, fmt.Errorf("cobblestone: reading header: %w", err)
	}
	st, err := openHeader(inputKey, context, header[:])
	if err != nil {
		return nil, err
	}
	return newReaderAt(r, HeaderSize, size-HeaderSize, st, opts)
}

// NewRawReaderAt returns a ReaderAt for raw mode (the spec's appendix): r and
// size cover only the chunks, opened with key directly; no commitment is
// checked. The caller may Destroy key once NewRawReaderAt returns.
func NewRawReaderAt(r io.ReaderAt, size int64, key *MessageKey, opts ...Option) (*ReaderAt, error) {
	if r == nil {
		return nil, errors.New("cobblestone: nil io.ReaderAt")
	}
	st, err := newAEADState(key)
	if err != nil {
		return nil, err
	}
	return newReaderAt(r, 0, size, st, opts)
}

func newReaderAt(r io.ReaderAt, base, ctSize int64, st *aeadState, opts []Option) (*ReaderAt, error) {
	size, err := rawPlaintextSize(ctSize)
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return &ReaderAt{
		src:    r,
		st:     st,
		base:   base,
		ctSize: ctSize,
		size:   size,
		last:   uint64(size / ChunkSize),
		conc:   o.concurrency,
	}, nil
}

// Size authenticates the message length by decrypting the final chunk and
// returns the plaintext length. The outcome is cached (I/O errors are not).
func (r *ReaderAt) Size() (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sizeOK {
		return r.size, nil
	}
	if r.sizeErr != nil {
		return 0, r.sizeErr
	}
	cb := chunkBufPool.Get().(*chunkBuf)
	defer chunkBufPool.Put(cb)
	if _, err := r.openChunk(r.last, cb.ct[:0], cb); err != nil {
		if errors.Is(err, ErrAuthentication) || errors.Is(err, ErrTruncated) {
			r.sizeErr = err
		}
		return 0, err
	}
	r.sizeOK = true
	return r.size, nil
}

// ReadAt decrypts len(p) plaintext bytes starting at off. It decrypts only
// the chunks overlapping the range; a range reaching the end of the message
// also authenticates the final chunk, so io.EOF is returned only for a length
// that is authentic. n < len(p) only with an error: io.EOF at the end, or an
// error wrapping ErrAuthentication, ErrTruncated or the source's error, in
// which case p[:n] holds the authenticated bytes before the failing chunk and
// p[n:] is zeroed.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegativeOffset
	}
	if off >= r.size {
		if _, err := r.Size(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end, atEnd := r.size, true
	if int64(len(p)) < r.size-off {
		end, atEnd = off+int64(len(p)), false
	}
	first, last := uint64(off/ChunkSize), uint64((end-1)/ChunkSize)
	if atEnd {
		last = r.last
	}
	if bad, err := r.decryptRange(p, off, end, first, last); err != nil {
		n := max(int64(bad)*ChunkSize, off) - off
		clear(p[n:])
		return int(n), err
	}
	if atEnd {
		r.mu.Lock()
		r.sizeOK = true
		r.mu.Unlock()
	}
	n := int(end - off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// decryptRange decrypts chunks first..last into p, which holds plaintext
// [off, end), splitting the chunks among up to conc goroutines. On error it
// returns the earliest failing chunk.
func (r *ReaderAt) decryptRange(p []byte, off, end int64, first, last uint64) (uint64, error) {
	count := last - first + 1
	workers := uint64(r.conc)
	if count < workers {
		workers = count
	}
	if workers <= 1 {
		return r.decryptChunks(p, off, end, first, last)
	}
	per := (count + workers - 1) / workers
	type result struct {
		bad uint64
		err error
	}
	results := make([]result, workers)
	var wg sync.WaitGroup
	for i := range workers {
		from := first + i*per
		to := min(from+per-1, last)
		if from > to {
			break
		}
		wg.Go(func() {
			results[i].bad, results[i].err = r.decryptChunks(p, off, end, from, to)
		})
	}
	wg.Wait()
	for _, res := range results {
		if res.err != nil {
			return res.bad, res.err // groups are in chunk order
		}
	}
	return 0, nil
}

// decryptChunks decrypts chunks from..to (inclusive) into p, which holds
// plaintext [off, end). Chunks wholly inside the range are opened straight
// into p; partial ones in a scratch buffer.
func (r *ReaderAt) decryptChunks(p []byte, off, end int64, from, to uint64) (uint64, error) {
	cb := chunkBufPool.Get().(*chunkBuf)
	defer chunkBufPool.Put(cb)
	for idx := from; idx <= to; idx++ {
		start := int64(idx) * ChunkSize
		stop := min(start+ChunkSize, r.size)
		lo, hi := max(start, off), min(stop, end)
		if lo == start && hi == stop {
			dst := p[lo-off : lo-off : hi-off]
			if _, err := r.openChunk(idx, dst, cb); err != nil {
				return idx, err
			}
			continue
		}
		plain, err := r.openChunk(idx, cb.ct[:0], cb)
		if err != nil {
			return idx, err
		}
		copy(p[lo-off:hi-off], plain[lo-start:hi-start])
	}
	return 0, nil
}

// openChunk reads chunk idx into cb and opens it, appending the plaintext to
// dst (which is either cb.ct[:0] or has no capacity beyond the plaintext).
func (r *ReaderAt) openChunk(idx uint64, dst []byte, cb *chunkBuf) ([]byte, error) {
	n := int64(EncryptedChunkSize)
	if idx == r.last {
		n = r.ctSize - int64(idx)*EncryptedChunkSize
	}
	ct := cb.ct[:n]
	if m, err := r.src.ReadAt(ct, r.base+int64(idx)*EncryptedChunkSize); int64(m) < n {
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("%w: source ends inside chunk %d", ErrTruncated, idx)
		}
		return nil, fmt.Errorf("cobblestone: reading chunk %d: %w", idx, err)
	}
	r.st.nonce(&cb.nonce, idx)
	plain, err := r.st.aead.Open(dst, cb.nonce[:], ct, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %d", ErrAuthentication, idx)
	}
	return plain, nil
}
