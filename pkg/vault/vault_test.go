package vault_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/vault"
)

const chunk = 1000

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func openStore(t *testing.T) (*vault.Store, *natstest.Env) {
	t.Helper()
	env := natstest.Start(t)
	s, err := vault.Open(context.Background(), env.JS, events.BucketVault, vault.WithChunkSize(chunk))
	if err != nil {
		t.Fatal(err)
	}
	return s, env
}

// checkRanges reads every interesting range through ReaderAt and compares.
func checkRanges(t *testing.T, s *vault.Store, name string, want []byte) (scanned bool) {
	t.Helper()
	defer func() { scanned = lastScanned }()
	ctx := context.Background()
	ra, err := s.OpenReaderAt(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Size() != int64(len(want)) {
		t.Fatalf("Size = %d, want %d", ra.Size(), len(want))
	}
	var offs []int
	for _, o := range []int{0, 1, chunk - 1, chunk, chunk + 1, 2*chunk - 1, len(want) - 1, len(want)} {
		if o >= 0 && o <= len(want) {
			offs = append(offs, o)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20 && len(want) > 0; i++ {
		offs = append(offs, r.IntN(len(want)))
	}
	for _, off := range offs {
		for _, n := range []int{0, 1, 7, chunk, chunk + 3, 3 * chunk, len(want)} {
			p := make([]byte, n)
			got, err := ra.ReadAt(p, int64(off))
			end := min(off+n, len(want))
			wantN := end - off
			if got != wantN {
				t.Fatalf("ReadAt(len %d, off %d) n = %d, want %d (err %v)", n, off, got, wantN, err)
			}
			if wantN < n && err != io.EOF {
				t.Fatalf("ReadAt(len %d, off %d) short read err = %v, want io.EOF", n, off, err)
			}
			if wantN == n && err != nil {
				t.Fatalf("ReadAt(len %d, off %d) err = %v", n, off, err)
			}
			if !bytes.Equal(p[:got], want[off:end]) {
				t.Fatalf("ReadAt(len %d, off %d) returned wrong bytes", n, off)
			}
		}
	}
	// And the whole object through io.SectionReader.
	all, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil || !bytes.Equal(all, want) {
		t.Fatalf("full read via ReaderAt: %d bytes, err %v", len(all), err)
	}
	lastScanned = ra.Scanned()
	return
}

var lastScanned bool

func TestPutAndReadAt(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	for i, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 7*chunk + 13} {
		name := fmt.Sprintf("acme/asset-%d", i)
		data := randomBytes(size, uint64(size))
		// A reader that returns one byte at a time must still make full chunks.
		info, err := s.Put(ctx, name, iotest.OneByteReader(bytes.NewReader(data)), jetstream.ObjectMeta{})
		if err != nil {
			t.Fatal(err)
		}
		wantChunks := (size + chunk - 1) / chunk
		if int(info.Chunks) != wantChunks {
			t.Fatalf("size %d: %d chunks, want %d", size, info.Chunks, wantChunks)
		}
		sum := sha256.Sum256(data)
		if h, err := vault.DigestHex(info.Digest); err != nil || h != hex.EncodeToString(sum[:]) {
			t.Fatalf("DigestHex = %s, %v", h, err)
		}
		if checkRanges(t, s, name, data) {
			t.Errorf("size %d: object written alone needed a scan, want the contiguous fast path", size)
		}
	}
}

// Objects written concurrently interleave their chunks in the stream, so
// the contiguous fast path does not apply.
func TestReadAtInterleavedObjects(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	const n = 6
	datas := make([][]byte, n)
	var wg sync.WaitGroup
	writers := make([]*io.PipeWriter, n)
	for i := range n {
		datas[i] = randomBytes(20*chunk+i, uint64(100+i))
		pr, pw := io.Pipe()
		writers[i] = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Put(ctx, fmt.Sprintf("acme/i-%d", i), pr, jetstream.ObjectMeta{}); err != nil {
				t.Error(err)
			}
		}()
	}
	// Feed the objects a chunk at a time in turn, so their chunks interleave
	// in the stream.
	for off := 0; off < 21*chunk; off += chunk {
		for i := range n {
			if off < len(datas[i]) {
				if _, err := writers[i].Write(datas[i][off:min(off+chunk, len(datas[i]))]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, w := range writers {
		w.Close()
	}
	wg.Wait()
	scans := 0
	for i := range n {
		if checkRanges(t, s, fmt.Sprintf("acme/i-%d", i), datas[i]) {
			scans++
		}
	}
	if scans == 0 {
		t.Error("no interleaved object needed an index scan: the test did not exercise that path")
	}
}

// Objects put by other tools may have short chunks in the middle.
func TestReadAtNonUniformChunks(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	data := randomBytes(5*chunk+77, 9)
	// The raw Object Store sends every short read as its own chunk.
	if _, err := s.ObjectStore().Put(ctx, jetstream.ObjectMeta{Name: "acme/raw", Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunk}}, iotest.HalfReader(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if !checkRanges(t, s, "acme/raw", data) {
		t.Error("non-uniform object was read without an exact index")
	}
}

func TestReplaceAndDelete(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "acme/a", bytes.NewReader([]byte("first version")), jetstream.ObjectMeta{Metadata: map[string]string{"v": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "acme/a", bytes.NewReader([]byte("second")), jetstream.ObjectMeta{Metadata: map[string]string{"v": "2"}}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, "acme/a")
	if err != nil || info.Metadata["v"] != "2" || info.Size != 6 {
		t.Fatalf("Info after replace = %+v, %v", info, err)
	}
	checkRanges(t, s, "acme/a", []byte("second"))
	if err := s.Delete(ctx, "acme/a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "acme/a"); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	if _, err := s.Info(ctx, "acme/a"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Info after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenReaderAt(ctx, "acme/missing"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("OpenReaderAt(missing) = %v, want ErrNotFound", err)
	}
}

func TestDigestHexRejectsMalformed(t *testing.T) {
	for _, d := range []string{"", "MD5=abc", "SHA-256=!!", "SHA-256=AAAA"} {
		if _, err := vault.DigestHex(d); err == nil {
			t.Errorf("DigestHex(%q) succeeded", d)
		}
	}
}

// Objects written by PutNew are ordinary Object Store objects: the Object
// Store client reads them, lists them, verifies their digest, replaces and
// deletes them.
func TestPutNewIsObjectStoreCompatible(t *testing.T) {
	s, env := openStore(t)
	ctx := context.Background()
	var objs []vault.NewObject
	for i, size := range []int{0, 1, chunk, 3*chunk + 7} {
		objs = append(objs, vault.NewObject{
			Name: fmt.Sprintf("acme/new-%d", i),
			Data: randomBytes(size, uint64(size)+1),
			Meta: jetstream.ObjectMeta{Metadata: map[string]string{"k": fmt.Sprint(i)}},
		})
	}
	infos, errs := s.PutNew(ctx, objs)
	for i, o := range objs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		obs, err := env.JS.ObjectStore(ctx, events.BucketVault)
		if err != nil {
			t.Fatal(err)
		}
		got, err := obs.GetBytes(ctx, o.Name) // verifies the digest
		if err != nil || !bytes.Equal(got, o.Data) {
			t.Fatalf("Object Store read of %s: %d bytes, %v", o.Name, len(got), err)
		}
		info, err := obs.GetInfo(ctx, o.Name)
		if err != nil || info.Size != uint64(len(o.Data)) || info.Digest != infos[i].Digest || info.Metadata["k"] != fmt.Sprint(i) || info.Chunks != infos[i].Chunks {
			t.Fatalf("GetInfo(%s) = %+v, %v; PutNew said %+v", o.Name, info, err, infos[i])
		}
		checkRanges(t, s, o.Name, o.Data)
	}
	list, err := s.ObjectStore().List(ctx)
	if err != nil || len(list) != len(objs) {
		t.Fatalf("List = %d objects, %v", len(list), err)
	}
	// The Object Store replaces and deletes them like its own.
	if _, err := s.Put(ctx, objs[3].Name, bytes.NewReader([]byte("replaced")), jetstream.ObjectMeta{}); err != nil {
		t.Fatal(err)
	}
	checkRanges(t, s, objs[3].Name, []byte("replaced"))
	if err := s.Delete(ctx, objs[2].Name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Info(ctx, objs[2].Name); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	// Only the replaced and deleted objects' chunks are gone.
	st, _ := env.JS.Stream(ctx, "OBJ_"+events.BucketVault)
	si, _ := st.Info(ctx, jetstream.WithSubjectFilter("$O."+events.BucketVault+".C.>"))
	var chunks uint64
	for _, n := range si.State.Subjects {
		chunks += n
	}
	if want := uint64(infos[1].Chunks) + 1; chunks != want {
		t.Fatalf("%d chunk messages left, want %d", chunks, want)
	}
}
