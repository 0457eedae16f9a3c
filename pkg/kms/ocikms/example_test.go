package ocikms_test

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/kms/ocikms"
)

// Wrap a data key under an OCI Vault key (here the emulator's), rotate the
// key, unwrap the old ciphertext, and see what OCI answers for a tenant
// context that does not match and for a disabled key.
func Example() {
	vault, err := ociemu.Start() // in production: a key URI the tenant enrolled
	if err != nil {
		fmt.Println(err)
		return
	}
	defer vault.Close()
	key := vault.CreateKey()

	// In production: ocikms.New(ocikms.WithInstancePrincipal()) or WithAPIKey.
	p, err := vault.Provider(ocikms.WithMaxAttempts(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	client := kms.NewClient(kms.WithProvider(kms.SchemeOCI, p))
	ctx := context.Background()
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

	dk, err := client.GenerateDataKey(ctx, key, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dk.Destroy()
	fmt.Println("wrapped under the current version:", dk.KeyVersion == vault.CurrentVersion(key))

	v2 := vault.RotateKey(key)
	pt, err := client.Decrypt(ctx, key, dk.Ciphertext, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("old ciphertext unwraps after rotation:", pt.Equal(dk.Plaintext))
	pt.Destroy()
	dk2, err := client.GenerateDataKey(ctx, key, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	dk2.Destroy()
	fmt.Println("new data keys use the new version:", dk2.KeyVersion == v2)

	_, err = client.Decrypt(ctx, key, dk.Ciphertext, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed))
	fmt.Println("other tenant's context:", kms.CodeOf(err))

	vault.DisableKey(key)
	_, err = client.Decrypt(ctx, key, dk.Ciphertext, ec)
	fmt.Println("disabled key:", kms.CodeOf(err), kms.IsKeyUnusable(err), kms.IsEndpointFailure(err))

	// Output:
	// wrapped under the current version: true
	// old ciphertext unwraps after rotation: true
	// new data keys use the new version: true
	// other tenant's context: invalid_ciphertext
	// disabled key: key_disabled true false
}
