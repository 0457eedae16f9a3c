// Package vault stores and reads objects in a JetStream Object Store bucket
// (KW_VAULT for ciphertext, KW_STAGING for staged plaintext) with two things
// the plain Object Store API lacks:
//
//   - uniform chunks: Put always fills every chunk but the last, so a byte
//     offset maps to a chunk by arithmetic;
//   - random access: ReaderAt fetches only the chunks a byte range needs,
//     by stream sequence with JetStream direct gets, so a viewer seeking in
//     a recording does not download it from the start.
//
// Objects written by other tools (nats obj put) are read correctly too: if
// their chunks are not uniform, ReaderAt builds an exact offset index from
// a headers-only scan of the object's chunk subject.
package vault

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultChunkSize is the Object Store chunk size Put uses (the Object
// Store's own default): large enough for throughput, small enough that a
// random read over-fetches little.
const DefaultChunkSize = 128 << 10

// ErrNotFound is returned when the object does not exist (or is deleted).
var ErrNotFound = errors.New("vault: object not found")

// Store is one Object Store bucket.
type Store struct {
	js        jetstream.JetStream
	obs       jetstream.ObjectStore
	bucket    string
	chunkSize int
	stream    jetstream.Stream
}

// Option tunes a Store.
type Option func(*Store)

// WithChunkSize sets the chunk size of objects this Store puts.
func WithChunkSize(n int) Option { return func(s *Store) { s.chunkSize = n } }

// Open binds an existing bucket (created by events.Provision).
func Open(ctx context.Context, js jetstream.JetStream, bucket string, opts ...Option) (*Store, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("vault: object store %s: %w", bucket, err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("vault: stream of object store %s: %w", bucket, err)
	}
	s := &Store{js: js, obs: obs, bucket: bucket, chunkSize: DefaultChunkSize, stream: stream}
	for _, o := range opts {
		o(s)
	}
	if s.chunkSize <= 0 || s.chunkSize > 1<<20-1024 {
		return nil, fmt.Errorf("vault: chunk size %d out of range (1 .. %d)", s.chunkSize, 1<<20-1024)
	}
	return s, nil
}

// Bucket is the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// ObjectStore is the underlying bucket, for watches and listing.
func (s *Store) ObjectStore() jetstream.ObjectStore { return s.obs }

// Put stores r under name with uniform chunks. meta.Name is set to name.
// Putting an existing name replaces the object atomically: readers see the
// old object until the new metadata is stored.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, meta jetstream.ObjectMeta) (*jetstream.ObjectInfo, error) {
	meta.Name = name
	meta.Opts = &jetstream.ObjectMetaOptions{ChunkSize: uint32(s.chunkSize)}
	info, err := s.obs.Put(ctx, meta, fullReader{r})
	if err != nil {
		return nil, fmt.Errorf("vault: put %s/%s: %w", s.bucket, name, err)
	}
	return info, nil
}

// Info returns the object's metadata, or ErrNotFound.
func (s *Store) Info(ctx context.Context, name string) (*jetstream.ObjectInfo, error) {
	info, err := s.obs.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, s.bucket, name)
	}
	if err != nil {
		return nil, fmt.Errorf("vault: info %s/%s: %w", s.bucket, name, err)
	}
	return info, nil
}

// Get streams the whole object (the Object Store's ordered consumer, with
// its digest check at EOF).
func (s *Store) Get(ctx context.Context, name string) (jetstream.ObjectResult, error) {
	res, err := s.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, s.bucket, name)
	}
	if err != nil {
		return nil, fmt.Errorf("vault: get %s/%s: %w", s.bucket, name, err)
	}
	return res, nil
}

// Delete removes the object. Deleting a missing object is not an error, so
// a retried delete is harmless.
func (s *Store) Delete(ctx context.Context, name string) error {
	err := s.obs.Delete(ctx, name)
	if err == nil || errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	return fmt.Errorf("vault: delete %s/%s: %w", s.bucket, name, err)
}

// DigestHex converts an Object Store digest ("SHA-256=<base64url>") to hex.
func DigestHex(digest string) (string, error) {
	b64, ok := strings.CutPrefix(digest, "SHA-256=")
	if !ok {
		return "", fmt.Errorf("vault: digest %q is not SHA-256", digest)
	}
	sum, err := base64.URLEncoding.DecodeString(b64)
	if err != nil || len(sum) != 32 {
		return "", fmt.Errorf("vault: malformed digest %q", digest)
	}
	return hex.EncodeToString(sum), nil
}

// fullReader turns short reads into full ones, so the Object Store's Put
// (which sends whatever one Read returns as a chunk) makes uniform chunks.
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (int, error) {
	n, err := io.ReadFull(f.r, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	if n > 0 && err == io.EOF {
		// Hand back the data now; the next Read reports EOF.
		return n, nil
	}
	return n, err
}

// ReaderAt reads an object by byte range, fetching only the chunks needed.
// It is safe for concurrent use.
type ReaderAt struct {
	store *Store
	ctx   context.Context
	info  *jetstream.ObjectInfo
	subj  string

	mu      sync.Mutex
	indexed bool
	seqs    []uint64 // stream sequence of each chunk
	offsets []int64  // start offset of each chunk; nil when uniform
	chunk   int64    // uniform chunk size
	cache   []cachedChunk
}

type cachedChunk struct {
	index int
	data  []byte
}

const cacheChunks = 4

// OpenReaderAt opens name for random access. ctx bounds every later ReadAt.
func (s *Store) OpenReaderAt(ctx context.Context, name string) (*ReaderAt, error) {
	info, err := s.Info(ctx, name)
	if err != nil {
		return nil, err
	}
	if info.Opts != nil && info.Opts.Link != nil {
		return nil, fmt.Errorf("vault: %s/%s is a link; open its target", s.bucket, name)
	}
	chunk := int64(DefaultChunkSize)
	if info.Opts != nil && info.Opts.ChunkSize > 0 {
		chunk = int64(info.Opts.ChunkSize)
	}
	return &ReaderAt{
		store: s,
		ctx:   ctx,
		info:  info,
		subj:  "$O." + s.bucket + ".C." + info.NUID,
		chunk: chunk,
	}, nil
}

// Size is the object's size in bytes.
func (r *ReaderAt) Size() int64 { return int64(r.info.Size) }

// Info is the object's metadata.
func (r *ReaderAt) Info() *jetstream.ObjectInfo { return r.info }

// ReadAt implements io.ReaderAt.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	size := r.Size()
	if off < 0 {
		return 0, fmt.Errorf("vault: negative offset %d", off)
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < size {
		idx, start, err := r.locate(off)
		if err != nil {
			return n, err
		}
		data, err := r.chunkData(idx)
		if err == errReindexed {
			continue
		}
		if err != nil {
			return n, err
		}
		pos := off - start
		if pos >= int64(len(data)) {
			return n, fmt.Errorf("vault: %s/%s chunk %d is shorter than expected (object changed while reading?)", r.store.bucket, r.info.Name, idx)
		}
		c := copy(p[n:], data[pos:])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// locate maps a byte offset to a chunk index and that chunk's start offset.
func (r *ReaderAt) locate(off int64) (int, int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.indexLocked(); err != nil {
		return 0, 0, err
	}
	if r.offsets == nil {
		idx := off / r.chunk
		return int(idx), idx * r.chunk, nil
	}
	idx := sort.Search(len(r.offsets), func(i int) bool { return r.offsets[i] > off }) - 1
	return idx, r.offsets[idx], nil
}

// indexLocked finds the stream sequence of every chunk. Fast path: the
// chunks are contiguous in the stream (no other object was written in
// between), which two direct gets prove. Otherwise a headers-only scan of
// the chunk subject lists every chunk's sequence and size.
func (r *ReaderAt) indexLocked() error {
	if r.indexed {
		return nil
	}
	n := int(r.info.Chunks)
	if n == 0 {
		r.indexed = true
		return nil
	}
	first, err := r.store.stream.GetMsg(r.ctx, 1, jetstream.WithGetMsgSubject(r.subj))
	if err != nil {
		return r.missing(err)
	}
	contiguous := n == 1
	if !contiguous {
		last, err := r.store.stream.GetLastMsgForSubject(r.ctx, r.subj)
		if err != nil {
			return r.missing(err)
		}
		contiguous = last.Sequence-first.Sequence+1 == uint64(n)
	}
	if contiguous && (n == 1 || int64(len(first.Data)) == r.chunk) {
		r.seqs = make([]uint64, n)
		for i := range r.seqs {
			r.seqs[i] = first.Sequence + uint64(i)
		}
		r.putCacheLocked(0, first.Data)
		r.indexed = true
		return nil
	}
	return r.scanLocked()
}

func (r *ReaderAt) scanLocked() error {
	n := int(r.info.Chunks)
	cons, err := r.store.js.OrderedConsumer(r.ctx, "OBJ_"+r.store.bucket, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{r.subj},
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("vault: indexing %s/%s: %w", r.store.bucket, r.info.Name, err)
	}
	seqs := make([]uint64, 0, n)
	offsets := make([]int64, 0, n)
	var pos int64
	for len(seqs) < n {
		batch, err := cons.Fetch(n-len(seqs), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("vault: indexing %s/%s: %w", r.store.bucket, r.info.Name, err)
		}
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("vault: indexing %s/%s: %w", r.store.bucket, r.info.Name, err)
			}
			size, err := strconv.ParseInt(m.Headers().Get(nats.MsgSize), 10, 64)
			if err != nil {
				return fmt.Errorf("vault: indexing %s/%s: chunk without %s header", r.store.bucket, r.info.Name, nats.MsgSize)
			}
			seqs = append(seqs, md.Sequence.Stream)
			offsets = append(offsets, pos)
			pos += size
			got++
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("vault: indexing %s/%s: %w", r.store.bucket, r.info.Name, err)
		}
		if got == 0 {
			return fmt.Errorf("vault: indexing %s/%s: found %d of %d chunks", r.store.bucket, r.info.Name, len(seqs), n)
		}
	}
	if pos != r.Size() {
		return fmt.Errorf("vault: %s/%s chunks add up to %d bytes, metadata says %d", r.store.bucket, r.info.Name, pos, r.Size())
	}
	r.seqs, r.offsets, r.indexed = seqs, offsets, true
	r.cache = nil
	return nil
}

func (r *ReaderAt) missing(err error) error {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%w: %s/%s chunks are gone (deleted or replaced while reading)", ErrNotFound, r.store.bucket, r.info.Name)
	}
	return fmt.Errorf("vault: reading %s/%s: %w", r.store.bucket, r.info.Name, err)
}

// chunkData returns chunk idx, from the small cache or by direct get.
func (r *ReaderAt) chunkData(idx int) ([]byte, error) {
	r.mu.Lock()
	for _, c := range r.cache {
		if c.index == idx {
			r.mu.Unlock()
			return c.data, nil
		}
	}
	seq := r.seqs[idx]
	uniform := r.offsets == nil
	r.mu.Unlock()

	msg, err := r.store.stream.GetMsg(r.ctx, seq)
	if err != nil {
		return nil, r.missing(err)
	}
	if msg.Subject != r.subj {
		return nil, fmt.Errorf("%w: %s/%s chunk %d was replaced while reading", ErrNotFound, r.store.bucket, r.info.Name, idx)
	}
	if uniform && idx < len(r.seqs)-1 && int64(len(msg.Data)) != r.chunk {
		// Not written by Put: switch to an exact index and retry.
		r.mu.Lock()
		err := r.scanLocked()
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return nil, errReindexed
	}
	r.mu.Lock()
	r.putCacheLocked(idx, msg.Data)
	r.mu.Unlock()
	return msg.Data, nil
}

var errReindexed = errors.New("vault: reindexed")

func (r *ReaderAt) putCacheLocked(idx int, data []byte) {
	if len(r.cache) >= cacheChunks {
		copy(r.cache, r.cache[1:])
		r.cache = r.cache[:len(r.cache)-1]
	}
	r.cache = append(r.cache, cachedChunk{index: idx, data: data})
}
