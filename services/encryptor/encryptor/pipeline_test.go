package encryptor_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
)

// TestPutGetRoundTrip: put → encrypted → get returns identical bytes, for
// the sizes at the format's edges and a 64 MiB recording, with ranges at
// chunk edges read through the key broker.
func TestPutGetRoundTrip(t *testing.T) {
	s := newStack(t)
	key := s.enroll("acme")
	const c = cobblestone.ChunkSize
	sizes := []int{0, 1, c, c + 1, 300 << 10, 64 << 20}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := pattern(n, byte(n))
			id := fmt.Sprintf("asset-%d", n)
			enc := s.mustEncrypt("acme", id, data)
			if enc.Mode != events.ModeCustomer || enc.KeyURI != key.String() || enc.Size != int64(n) {
				t.Fatalf("AssetEncrypted = mode %s key %s size %d", enc.Mode, enc.KeyURI, enc.Size)
			}
			got, err := s.get("acme", id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("get returned %d bytes, not the %d put", len(got), n)
			}
			// Staged content (over the inline limit) is gone once encrypted.
			if s.stagingExists("acme/" + id) {
				t.Errorf("staging copy of %s still exists", id)
			}
		})
	}
	t.Run("ranges", func(t *testing.T) {
		data := pattern(5*c+100, 7)
		s.mustEncrypt("acme", "ranges", data)
		a, err := s.broker.Open(context.Background(), s.vault, "acme", "ranges")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int{{0, 1}, {c - 1, c + 1}, {c, 2 * c}, {3*c - 1, 3 * c}, {5 * c, 5*c + 100}, {2 * c, 5*c + 100}} {
			buf := make([]byte, r[1]-r[0])
			n, err := a.ReadAt(buf, int64(r[0]))
			if err != nil && err != io.EOF {
				t.Fatalf("ReadAt %v: %v", r, err)
			}
			if n != len(buf) || !bytes.Equal(buf, data[r[0]:r[1]]) {
				t.Fatalf("ReadAt %v: wrong bytes", r)
			}
		}
	})
}
