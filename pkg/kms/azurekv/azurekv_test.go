package azurekv_test

import (
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
)

var ec = kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

// newProvider returns an emulator and a provider using it through the real
// azidentity client-secret flow.
func newProvider(t testing.TB, opts ...azurekv.Option) (*azureemu.Emulator, *azurekv.Provider) {
	t.Helper()
	e := azureemu.StartT(t)
	p, err := e.Provider(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e, p
}

// conformanceKeys creates two keys and a disabled key, and names a missing
// key, in a Key Vault (RSA) or a Managed HSM (oct). Names start with prefix:
// key names are unique across the emulator's vaults.
func conformanceKeys(e *azureemu.Emulator, hsm bool, prefix string) kmstest.ConformanceConfig {
	create, missing, vault := e.CreateRSAKey, e.MissingVaultKey, "acme-kv"
	if hsm {
		create, missing, vault = e.CreateOctKey, e.MissingHSMKey, "acme-hsm"
	}
	disabled := create(vault, prefix+"disabled")
	e.DisableKey(disabled)
	return kmstest.ConformanceConfig{
		KeyA:        create(vault, prefix+"key-a"),
		KeyB:        create(vault, prefix+"key-b"),
		DisabledKey: disabled,
		MissingKey:  missing(vault, prefix+"missing"),
	}
}

func TestConformance(t *testing.T) {
	e, p := newProvider(t)
	for _, tc := range []struct {
		name string
		hsm  bool
	}{{"KeyVaultRSA", false}, {"ManagedHSMOct", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := conformanceKeys(e, tc.hsm, tc.name+"-direct-")
			cfg.Provider = p
			kmstest.RunConformance(t, cfg)
		})
		t.Run(tc.name+"ThroughClient", func(t *testing.T) {
			cfg := conformanceKeys(e, tc.hsm, tc.name+"-client-")
			cfg.Provider = kms.NewClient(kms.WithProvider(kms.SchemeAzure, p))
			kmstest.RunConformance(t, cfg)
		})
	}
}
