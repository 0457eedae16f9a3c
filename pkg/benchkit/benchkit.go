// Package benchkit holds the raw baselines Keyward's benchmarks report next
// to their own figures, measured in the same run on the same machine and
// server: what moving an asset would cost with nothing but the Object Store,
// or nothing but AES-GCM. Both `go test -bench` benchmarks and `keyward
// bench` use them, so the two report the same floors.
package benchkit

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
)

// RawObjectStoreMove measures the floor for moving assets of size bytes:
// n objects are stored in a fresh file-backed Object Store bucket on js's
// server (not timed), then each is read back in full and put again under
// its name by conc workers, timed. It returns assets/s.
func RawObjectStoreMove(ctx context.Context, js jetstream.JetStream, n, size, conc int) (float64, error) {
	name := fmt.Sprintf("BENCH_OBJ_%d", time.Now().UnixNano())
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: name, Storage: jetstream.FileStorage})
	if err != nil {
		return 0, err
	}
	defer js.DeleteObjectStore(context.WithoutCancel(ctx), name)
	payload := make([]byte, size)
	rand.Read(payload)
	objName := func(i int) string { return "a-" + strconv.Itoa(i) }
	for i := range n {
		if _, err := obs.PutBytes(ctx, objName(i), payload); err != nil {
			return 0, err
		}
	}
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	errc := make(chan error, conc)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, err := obs.Get(ctx, objName(i))
				if err != nil {
					errc <- err
					return
				}
				b, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					errc <- err
					return
				}
				if _, err := obs.PutBytes(ctx, objName(i), b); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}

// RawAESGCMMove measures the crypto floor for moving one asset of size
// bytes: AES-256-GCM open of its Cobblestone chunks under one key, then seal
// under another, on one core, repeated for at least minTime. It returns
// assets/s.
func RawAESGCMMove(size int, minTime time.Duration) float64 {
	newAEAD := func() cipher.AEAD {
		key := make([]byte, 32)
		rand.Read(key)
		block, _ := aes.NewCipher(key)
		aead, _ := cipher.NewGCM(block)
		return aead
	}
	from, to := newAEAD(), newAEAD()
	nonce := make([]byte, 12)
	plain := make([]byte, size)
	rand.Read(plain)
	var chunks [][]byte
	for off := 0; off < size || off == 0; off += cobblestone.ChunkSize {
		chunks = append(chunks, from.Seal(nil, nonce, plain[off:min(size, off+cobblestone.ChunkSize)], nil))
		if size == 0 {
			break
		}
	}
	pt := make([]byte, 0, cobblestone.ChunkSize)
	ct := make([]byte, 0, cobblestone.EncryptedChunkSize)
	n := 0
	start := time.Now()
	for n == 0 || time.Since(start) < minTime {
		for _, c := range chunks {
			var err error
			if pt, err = from.Open(pt[:0], nonce, c, nil); err != nil {
				panic(err) // our own ciphertext
			}
			ct = to.Seal(ct[:0], nonce, pt, nil)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
