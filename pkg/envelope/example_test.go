package envelope_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/kms"
)

func Example() {
	// In Keyward the seed comes from the KMS (GenerateDataKey) through the
	// seed cache, and the header carries its wrapped form.
	seedBytes := make([]byte, envelope.SeedSize)
	rand.Read(seedBytes)
	seed := kms.NewSecret(seedBytes)
	hdr := &envelope.Header{KeyURI: "localkms:///tmp/platform.key", KeyVersion: "1", WrappedSeed: []byte("wrapped by the KMS")}
	id := envelope.Identity{TenantID: "acme", AssetID: "chat-1", Service: "team_chat"}

	var ct bytes.Buffer
	w, _ := envelope.NewWriter(&ct, hdr, seed, id)
	io.WriteString(w, "hello, world")
	w.Close()

	unwrap := envelope.UnwrapFunc(func(context.Context, *envelope.Header) (*kms.Secret, error) {
		return seed.Clone(), nil // the KMS Decrypt of h.WrappedSeed
	})
	r, err := envelope.NewReader(context.Background(), &ct, id, unwrap)
	if err != nil {
		fmt.Println(err)
		return
	}
	pt, _ := io.ReadAll(r)
	fmt.Printf("%s (key %s)\n", pt, r.Header.KeyURI)
	// Output: hello, world (key localkms:///tmp/platform.key)
}
