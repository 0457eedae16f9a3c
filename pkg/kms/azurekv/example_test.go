package azurekv_test

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
)

// Wrap a seed under a customer's Key Vault key (here the emulator, reached
// through the real azidentity client-secret flow and the bearer challenge),
// rotate the key, unwrap the old seed, and see the context binding and a
// disabled key at work.
func Example() {
	e, err := azureemu.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	key := e.CreateRSAKey("acme-kv", "keyward-seed") // azurekv://acme-kv.vault.azure.net/keys/keyward-seed?endpoint=...

	p, err := e.Provider() // azurekv.New(azurekv.WithCredential(...), azurekv.WithClientOptions(...))
	if err != nil {
		fmt.Println(err)
		return
	}
	client := kms.NewClient(kms.WithProvider(kms.SchemeAzure, p))
	ctx := context.Background()
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

	dk, err := client.GenerateDataKey(ctx, key, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dk.Destroy()
	fmt.Printf("seed: %d bytes, ciphertext header %q\n", dk.Plaintext.Len(), dk.Ciphertext[:4])

	v2 := e.RotateKey(key)
	dk2, err := client.GenerateDataKey(ctx, key, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dk2.Destroy()
	fmt.Println("new seeds wrapped by the new version:", dk2.KeyVersion == v2)

	pt, err := client.Decrypt(ctx, key, dk.Ciphertext, ec)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pt.Destroy()
	fmt.Println("old seed still unwraps:", pt.Equal(dk.Plaintext))

	_, err = client.Decrypt(ctx, key, dk.Ciphertext, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed))
	fmt.Println("another tenant's context:", kms.CodeOf(err))

	e.DisableKey(key)
	_, err = client.Decrypt(ctx, key, dk.Ciphertext, ec)
	fmt.Println("disabled key:", kms.CodeOf(err), kms.IsKeyUnusable(err))

	fmt.Println("data-plane operations:", e.Server.Faults.Ops()[azureemu.OpWrapKey], "wrapKey,", e.Server.Faults.Ops()[azureemu.OpUnwrapKey], "unwrapKey")

	// Output:
	// seed: 32 bytes, ciphertext header "KWAZ"
	// new seeds wrapped by the new version: true
	// old seed still unwraps: true
	// another tenant's context: invalid_ciphertext
	// disabled key: key_disabled true
	// data-plane operations: 3 wrapKey, 3 unwrapKey
}

// What a customer runs to let Keyward use a Managed HSM key, and nothing
// more.
func ExampleAccessInstructions() {
	out, err := azurekv.AccessInstructions(azurekv.AccessParams{
		PrincipalObjectID: "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
		TenantID:          "72f988bf-86f1-41af-91ab-2d7cd011db47",
		KeyURI:            "azurekv://acme-hsm.managedhsm.azure.net/keys/keyward-seed",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(out)
	// Output:
	// Grant Keyward the use of Managed HSM key "keyward-seed" in acme-hsm.managedhsm.azure.net (acme-hsm), for wrapKey and unwrapKey only.
	// Keyward's service principal: object ID 9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d.
	// Keyward never reads, creates, rotates or deletes keys: no other permission is needed.
	// Run the commands below with the Azure CLI as an administrator of tenant 72f988bf-86f1-41af-91ab-2d7cd011db47:
	//
	//   az login --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47
	//
	// 1. Create a custom role with exactly these two data actions (once per Managed HSM;
	//    skip if the role "Keyward Key Wrap" exists already):
	//
	//   az keyvault role definition create --hsm-name acme-hsm --role-definition '{
	//     "roleName": "Keyward Key Wrap",
	//     "description": "Wrap and unwrap with Managed HSM keys; nothing else. For Keyward.",
	//     "actions": [],
	//     "notActions": [],
	//     "dataActions": [
	//       "Microsoft.KeyVault/managedHsm/keys/wrap/action",
	//       "Microsoft.KeyVault/managedHsm/keys/unwrap/action"
	//     ],
	//     "notDataActions": []
	//   }'
	//
	// 2. Assign it to Keyward, scoped to this one key:
	//
	//   az keyvault role assignment create --hsm-name acme-hsm \
	//     --role "Keyward Key Wrap" \
	//     --assignee-object-id 9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d \
	//     --assignee-principal-type ServicePrincipal \
	//     --scope /keys/keyward-seed
}
