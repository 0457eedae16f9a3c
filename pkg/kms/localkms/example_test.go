package localkms_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
)

// Create a key file, wrap a data key, rotate, and unwrap the old ciphertext.
func Example() {
	dir, err := os.MkdirTemp("", "localkms-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if err := localkms.CreateKeyFile(filepath.Join(dir, "platform.key")); err != nil {
		fmt.Println(err)
		return
	}
	p := localkms.New(localkms.WithBaseDir(dir))
	key := kms.MustParseKeyURI("localkms://platform.key")
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	ctx := context.Background()

	dk, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dk.Destroy()
	fmt.Println("wrapped under version", dk.KeyVersion)

	v, err := localkms.RotateKeyFile(filepath.Join(dir, "platform.key"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rotated to version", v)

	pt, err := p.Decrypt(ctx, key, dk.Ciphertext, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pt.Destroy()
	fmt.Println("old ciphertext still unwraps:", pt.Equal(dk.Plaintext))

	_, err = p.Decrypt(ctx, key, dk.Ciphertext, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed))
	fmt.Println("other tenant's context:", kms.CodeOf(err))

	// Output:
	// wrapped under version 1
	// rotated to version 2
	// old ciphertext still unwraps: true
	// other tenant's context: invalid_ciphertext
}
