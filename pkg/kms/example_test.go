package kms_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
)

// A Client over localkms, a SeedCache in front of it, and what a customer
// disabling the key looks like.
func Example() {
	dir, err := os.MkdirTemp("", "keyward-kms-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	// Providers are registered explicitly, by scheme.
	client := kms.NewClient(
		kms.WithProvider(kms.SchemeLocal, localkms.New(localkms.WithBaseDir(dir), localkms.WithCreate(true))),
	)
	cache := kms.NewSeedCache(client, kms.DefaultSeedCacheConfig())
	defer cache.Flush()

	ctx := context.Background()
	key := kms.MustParseKeyURI("localkms://tenants/acme.key")
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

	// Encrypting three assets costs one KMS call.
	var wrapped []byte
	for range 3 {
		seed, err := cache.Seed(ctx, key, ec, 1<<20)
		if err != nil {
			fmt.Println(err)
			return
		}
		wrapped = seed.Ciphertext // stored with the asset, with seed.KeyVersion
		fmt.Printf("seed: %d bytes, key version %s, printed as %v\n", seed.Plaintext.Len(), seed.KeyVersion, seed.Plaintext)
		seed.Destroy()
	}
	fmt.Println("KMS calls:", client.Stats().Calls)

	// Reading unwraps the stored seed (with the same encryption context).
	seed, err := cache.Unwrap(ctx, key, wrapped, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	seed.Destroy()

	// The customer disables the key; the key status event flushes the cache.
	if err := localkms.SetDisabled(filepath.Join(dir, "tenants", "acme.key"), true); err != nil {
		fmt.Println(err)
		return
	}
	cache.FlushKey(key)
	_, err = cache.Seed(ctx, key, ec, 1<<20)
	fmt.Println("code:", kms.CodeOf(err))
	fmt.Println("key unusable:", errors.Is(err, kms.ErrKeyUnusable), "endpoint failure:", kms.IsEndpointFailure(err))

	// Output:
	// seed: 32 bytes, key version 1, printed as kms.Secret(redacted)
	// seed: 32 bytes, key version 1, printed as kms.Secret(redacted)
	// seed: 32 bytes, key version 1, printed as kms.Secret(redacted)
	// KMS calls: 1
	// code: key_disabled
	// key unusable: true endpoint failure: false
}
