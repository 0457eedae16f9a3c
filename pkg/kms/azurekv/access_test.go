package azurekv_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms/azurekv"
)

const (
	testPrincipal = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
	testTenant    = "72f988bf-86f1-41af-91ab-2d7cd011db47"
)

func TestAccessInstructionsGolden(t *testing.T) {
	for _, tc := range []struct{ golden, uri string }{
		{"access_vault.golden", "azurekv://acme-kv.vault.azure.net/keys/keyward-seed"},
		{"access_vault_versioned.golden", "azurekv://acme-kv.vault.azure.net/keys/keyward-seed/0123456789abcdef0123456789abcdef"},
		{"access_managedhsm.golden", "azurekv://acme-hsm.managedhsm.azure.net/keys/keyward-seed"},
		{"access_vault_china.golden", "azurekv://acme-kv.vault.azure.cn/keys/keyward-seed"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := azurekv.AccessInstructions(azurekv.AccessParams{
				PrincipalObjectID: strings.ToUpper(testPrincipal), // normalised to lower case
				TenantID:          testTenant,
				KeyURI:            tc.uri,
			})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("AccessInstructions(%s) differs from %s (run with -update to accept):\n%s", tc.uri, path, got)
			}
		})
	}
}

// The instructions grant exactly wrap and unwrap, scoped to the key.
func TestAccessInstructionsLeastPrivilege(t *testing.T) {
	vault, err := azurekv.AccessInstructions(azurekv.AccessParams{PrincipalObjectID: testPrincipal, TenantID: testTenant,
		KeyURI: "azurekv://acme-kv.vault.azure.net/keys/keyward-seed?endpoint=https://127.0.0.1:8443"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"Microsoft.KeyVault/vaults/keys/wrap/action",` + "\n" + `    "Microsoft.KeyVault/vaults/keys/unwrap/action"` + "\n  ],",
		`"Actions": [],`,
		`--assignee-object-id ` + testPrincipal,
		`/keys/keyward-seed"`,
		`--key-permissions wrapKey unwrapKey` + "\n",
	} {
		if !strings.Contains(vault, want) {
			t.Errorf("vault instructions lack %q", want)
		}
	}
	for _, never := range []string{"keys/read", "keys/decrypt", "keys/encrypt", "keys/sign", "keys/*", "127.0.0.1", " get", " list", "Crypto User"} {
		if strings.Contains(vault, never) {
			t.Errorf("vault instructions mention %q", never)
		}
	}
	hsm, err := azurekv.AccessInstructions(azurekv.AccessParams{PrincipalObjectID: testPrincipal, TenantID: testTenant,
		KeyURI: "azurekv://acme-hsm.managedhsm.azure.net/keys/keyward-seed"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{azurekv.HSMDataActionWrap, azurekv.HSMDataActionUnwrap, "--scope /keys/keyward-seed\n", "--hsm-name acme-hsm"} {
		if !strings.Contains(hsm, want) {
			t.Errorf("Managed HSM instructions lack %q", want)
		}
	}
	if strings.Contains(hsm, "set-policy") || strings.Contains(hsm, "vaults/keys") {
		t.Error("Managed HSM instructions mention vault access policies or vault data actions")
	}
}

func TestAccessInstructionsInvalid(t *testing.T) {
	for name, p := range map[string]azurekv.AccessParams{
		"application ID, not a GUID": {PrincipalObjectID: "keyward-app", TenantID: testTenant, KeyURI: "azurekv://acme-kv.vault.azure.net/keys/k"},
		"shell injection":            {PrincipalObjectID: testPrincipal + "; rm -rf /", TenantID: testTenant, KeyURI: "azurekv://acme-kv.vault.azure.net/keys/k"},
		"tenant domain":              {PrincipalObjectID: testPrincipal, TenantID: "contoso.onmicrosoft.com", KeyURI: "azurekv://acme-kv.vault.azure.net/keys/k"},
		"AWS key":                    {PrincipalObjectID: testPrincipal, TenantID: testTenant, KeyURI: "awskms://alias/k?region=eu-west-2"},
		"not a key URI":              {PrincipalObjectID: testPrincipal, TenantID: testTenant, KeyURI: "https://acme-kv.vault.azure.net/keys/k"},
		"bad key name":               {PrincipalObjectID: testPrincipal, TenantID: testTenant, KeyURI: "azurekv://acme-kv.vault.azure.net/keys/k$(id)"},
	} {
		if out, err := azurekv.AccessInstructions(p); err == nil {
			t.Errorf("AccessInstructions(%s) = %q, want an error", name, out)
		}
	}
}
