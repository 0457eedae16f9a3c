package cobblestone

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// With concurrency n > 1, chunks travel in batches of batchChunks (256 KiB),
// which amortises goroutine hand-offs, and up to inFlightPerWorker × n batches
// are in flight so that no worker waits for the caller.
const (
	batchChunks       = 16
	inFlightPerWorker = 2
)

// batch is a run of consecutive chunks processed by one goroutine. Chunk j
// lives at buf[j*EncryptedChunkSize:], so sealing and opening happen in place
// and full sealed chunks are contiguous.
type batch struct {
	buf   []byte // chunks × EncryptedChunkSize
	first uint64 // counter of chunk 0
	full  int    // full chunks
	final bool   // the final short chunk follows the full ones
	tail  int    // Writer: plaintext length of the final chunk; Reader: its ciphertext length
	done  int    // Writer: chunks already sealed; Reader: chunks that authenticated
	err   error  // Reader: error after the done chunks
	src   []byte // Writer: if set, the full chunks' plaintext (caller's memory), sealed out of place
	nonce [NonceSize]byte
	ready chan struct{} // cap 1; signalled when an asynchronous run finishes

	gen   uint64        // owner only: generation of the latest dispatch
	avail atomic.Uint64 // gen while the batch waits to be claimed, else 0
}

// Batches are recycled across Writers and Readers: one pool per size.
var (
	singlePool = sync.Pool{New: func() any { return newBatch(1) }}
	multiPool  = sync.Pool{New: func() any { return newBatch(batchChunks) }}
)

func newBatch(chunks int) *batch {
	return &batch{buf: make([]byte, chunks*EncryptedChunkSize), ready: make(chan struct{}, 1)}
}

// getBatch returns an idle batch of chunks (1 or batchChunks) chunks.
func getBatch(chunks int) *batch {
	if chunks == 1 {
		return singlePool.Get().(*batch)
	}
	return multiPool.Get().(*batch)
}

// putBatches recycles idle batches: no goroutine may still be using them.
func putBatches(bs ...*batch) {
	for _, b := range bs {
		if b == nil {
			continue
		}
		b.src = nil
		switch len(b.buf) {
		case EncryptedChunkSize:
			singlePool.Put(b)
		case batchChunks * EncryptedChunkSize:
			multiPool.Put(b)
		}
	}
}

func (b *batch) reset(first uint64) {
	b.first, b.full, b.final, b.tail, b.done, b.err, b.src = first, 0, false, 0, 0, nil, nil
}

// direct reports whether b seals straight from the caller's memory.
func (b *batch) direct() bool { return b.src != nil }

// chunks is the number of chunks in b, the final one included.
func (b *batch) chunks() int {
	if b.final {
		return b.full + 1
	}
	return b.full
}

// sealedLen is the length of the ciphertext in buf once sealed.
func (b *batch) sealedLen() int {
	n := b.full * EncryptedChunkSize
	if b.final {
		n += b.tail + TagSize
	}
	return n
}

// plaintext returns chunk j of an opened batch.
func (b *batch) plaintext(j int) []byte {
	off := j * EncryptedChunkSize
	if j == b.full {
		return b.buf[off : off+b.tail-TagSize]
	}
	return b.buf[off : off+ChunkSize]
}

// seal seals, in place, the chunks of b that are not sealed yet.
func (s *aeadState) seal(b *batch) {
	for j := b.done; j < b.chunks(); j++ {
		off, n := j*EncryptedChunkSize, ChunkSize
		if j == b.full {
			n = b.tail
		}
		plaintext := b.buf[off : off+n]
		if b.src != nil {
			plaintext = b.src[j*ChunkSize : j*ChunkSize+n]
		}
		s.nonce(&b.nonce, b.first+uint64(j))
		s.aead.Seal(b.buf[off:off], b.nonce[:], plaintext, nil)
	}
	b.done = b.chunks()
}

// open opens, in place, every chunk of b, stopping at the first failure,
// which it records in b.err ahead of any error already there.
func (s *aeadState) open(b *batch) {
	for j := 0; j < b.chunks(); j++ {
		idx := b.first + uint64(j)
		if idx >= maxChunks {
			b.err = fmt.Errorf("%w: chunk counter reached 2^38", ErrTooLarge)
			return
		}
		off, n := j*EncryptedChunkSize, EncryptedChunkSize
		if j == b.full {
			n = b.tail
		}
		s.nonce(&b.nonce, idx)
		if _, err := s.aead.Open(b.buf[off:off], b.nonce[:], b.buf[off:off+n], nil); err != nil {
			b.err = fmt.Errorf("%w: chunk %d", ErrAuthentication, idx)
			return
		}
		b.done = j + 1
	}
}

// dispatch makes b claimable and starts a goroutine to seal (or open) it.
// The owner may claim it first, in wait.
func (s *aeadState) dispatch(b *batch, open bool) {
	b.gen++
	b.avail.Store(b.gen)
	go s.run(b, b.gen, open)
}

// run seals or opens b if it still waits to be claimed for generation gen,
// then signals b.ready. A goroutine that lost the race to the owner, even
// one that starts after b was recycled, does nothing.
func (s *aeadState) run(b *batch, gen uint64, open bool) bool {
	if !b.avail.CompareAndSwap(gen, 0) {
		return false
	}
	if open {
		s.open(b)
	} else {
		s.seal(b)
	}
	b.ready <- struct{}{}
	return true
}

// wait returns once queue[0] is done. Meanwhile the calling goroutine works
// on batches no goroutine has claimed yet, so it never idles while there is
// work and at most len(queue) goroutines run at once.
func (s *aeadState) wait(queue []*batch, open bool) {
	b := queue[0]
	for {
		select {
		case <-b.ready:
			return
		default:
		}
		helped := false
		for _, q := range queue {
			if s.run(q, q.gen, open) {
				helped = true
				break
			}
		}
		if !helped {
			<-b.ready
			return
		}
	}
}

// cancel waits until no goroutine works on any batch of queue, claiming
// (and skipping) those not started yet.
func cancel(queue []*batch) {
	for _, q := range queue {
		if q.avail.CompareAndSwap(q.gen, 0) {
			q.ready <- struct{}{}
		}
		<-q.ready
	}
}
