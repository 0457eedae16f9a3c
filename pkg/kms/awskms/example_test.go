package awskms_test

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
)

// Wrap a seed under a customer's AWS KMS key (here an in-process emulator),
// unwrap it, and see what happens when the customer disables the key.
func Example() {
	emu, err := awsemu.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer emu.Close()
	ctx := context.Background()
	key, err := emu.CreateKey(ctx) // awskms://arn:aws:kms:eu-west-2:111122223333:key/<id>?endpoint=http://127.0.0.1:<port>
	if err != nil {
		fmt.Println(err)
		return
	}

	// In production: awskms.New(ctx) with the standard credential chain,
	// or awskms.WithAssumeRole(...).
	p, err := awskms.New(ctx, awskms.WithCredentials(emu.Credentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	client := kms.NewClient(kms.WithProvider(kms.SchemeAWS, p), kms.WithCallTimeout(2*time.Second))
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

	dk, err := client.GenerateDataKey(ctx, key, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dk.Destroy()
	fmt.Println("data key bytes:", dk.Plaintext.Len())
	fmt.Println("key version is the key ARN:", dk.KeyVersion == key.KeyID)

	pt, err := client.Decrypt(ctx, key, dk.Ciphertext, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pt.Destroy()
	fmt.Println("unwrapped:", pt.Equal(dk.Plaintext))

	_, err = client.Decrypt(ctx, key, dk.Ciphertext, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed))
	fmt.Println("other tenant's context:", kms.CodeOf(err))

	if err := emu.DisableKey(ctx, key); err != nil {
		fmt.Println(err)
		return
	}
	_, err = client.GenerateDataKey(ctx, key, ec)
	fmt.Println("after the customer disables the key:", kms.CodeOf(err), awskms.ReasonOf(err), kms.IsKeyUnusable(err))

	fmt.Println("operations used:", emu.Server.Faults.Ops())

	// Output:
	// data key bytes: 32
	// key version is the key ARN: true
	// unwrapped: true
	// other tenant's context: invalid_ciphertext
	// after the customer disables the key: key_disabled key_disabled true
	// operations used: map[Decrypt:2 GenerateDataKey:2]
}
