package azurekv_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
)

var update = flag.Bool("update", false, "rewrite golden and known-answer files")

// Rotation: the new version wraps, every version unwraps, the version
// returned is the one in Key Vault's kid, and a pinned URI wraps with its
// version.
func TestVersions(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		v1 := s.dk.KeyVersion
		if len(v1) != 32 {
			t.Fatalf("KeyVersion = %q, want Key Vault's 32-hex-digit version", v1)
		}
		v2 := s.e.RotateKey(s.key)
		dk2, err := s.p.GenerateDataKey(t.Context(), s.key, ec)
		if err != nil {
			t.Fatal(err)
		}
		defer dk2.Destroy()
		if dk2.KeyVersion != v2 || v2 == v1 {
			t.Fatalf("after rotation KeyVersion = %q, want the new version %q (old %q)", dk2.KeyVersion, v2, v1)
		}
		for v, dk := range map[string]*kms.DataKey{v1: s.dk, v2: dk2} {
			pt, err := s.p.Decrypt(t.Context(), s.key, dk.Ciphertext, ec)
			if err != nil || !pt.Equal(dk.Plaintext) {
				t.Fatalf("Decrypt of a version %s ciphertext = %v, %v", v, pt, err)
			}
			pt.Destroy()
		}

		pinned := s.key
		pinned.Version = v1
		w, err := s.p.Encrypt(t.Context(), pinned, kms.NewSecret(bytes.Repeat([]byte{1}, 32)), ec)
		if err != nil || w.KeyVersion != v1 {
			t.Fatalf("Encrypt under a URI pinned to %s = %+v, %v", v1, w, err)
		}
		// Unwrapping follows the recorded version, whatever the URI pins.
		pinned2 := s.key
		pinned2.Version = v2
		for _, u := range []kms.KeyURI{s.key, pinned2} {
			pt, err := s.p.Decrypt(t.Context(), u, w.Ciphertext, ec)
			if err != nil {
				t.Fatalf("Decrypt(%s) of a version %s ciphertext err = %v", u, v1, err)
			}
			pt.Destroy()
		}

		// Disabling one version disables exactly that version.
		s.e.DisableKey(pinned)
		_, err = s.p.Decrypt(t.Context(), s.key, s.dk.Ciphertext, ec)
		checkClass(t, "Decrypt of a disabled version's ciphertext", err, kms.CodeKeyDisabled)
		pt, err := s.p.Decrypt(t.Context(), s.key, dk2.Ciphertext, ec)
		if err != nil {
			t.Fatalf("Decrypt under the enabled version err = %v", err)
		}
		pt.Destroy()
	})
}

// The context is bound by the provider: Key Vault unwraps (its audit log
// shows a successful unwrapKey), and the digest check refuses.
func TestContextBinding(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		for name, other := range map[string]kms.EncryptionContext{
			"other tenant":  kms.NewEncryptionContext("globex", kms.PurposeAssetSeed),
			"other purpose": kms.NewEncryptionContext("acme", kms.PurposeProbe),
			"extra pair":    {kms.ContextKeyTenant: "acme", kms.ContextKeyPurpose: kms.PurposeAssetSeed, "x": "y"},
			"empty":         nil,
		} {
			s.e.Server.Faults.ResetLog()
			_, err := s.p.Decrypt(t.Context(), s.key, s.dk.Ciphertext, other)
			checkClass(t, "Decrypt with the "+name+" context", err, kms.CodeInvalidCiphertext)
			if n := s.e.Server.Faults.Ops()[azureemu.OpUnwrapKey]; n != 1 {
				t.Errorf("%d unwrapKey requests, want 1", n)
			}
		}
	})
}

// Least privilege: whatever the provider does — wrap, unwrap, rotate,
// failures, tampered input, both vault kinds — the emulator's data plane
// sees only wrapKey and unwrapKey (besides token and discovery requests to
// Microsoft Entra ID). Any other request (get-key, list, ...) would be
// logged as Unknown.
func TestLeastPrivilege(t *testing.T) {
	e, p := newProvider(t)
	keys := []kms.KeyURI{e.CreateRSAKey("acme-kv", "k1"), e.CreateOctKey("acme-hsm", "k2")}
	for _, key := range keys {
		dk := roundTrip(t, p, key)
		e.RotateKey(key)
		roundTrip(t, p, key)
		_, _ = p.Decrypt(t.Context(), key, dk.Ciphertext, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed))
		_, _ = p.Decrypt(t.Context(), key, flipHexDigit(dk.Ciphertext), ec)
		e.DisableKey(key)
		_, _ = p.GenerateDataKey(t.Context(), key, ec)
		e.DeleteKey(key)
		_, _ = p.Decrypt(t.Context(), key, dk.Ciphertext, ec)
	}
	seen := map[string]int{}
	for _, r := range e.Server.Faults.Requests() {
		seen[r.Op]++
		switch r.Op {
		case azureemu.OpWrapKey, azureemu.OpUnwrapKey, azureemu.OpToken, azureemu.OpDiscovery:
		default:
			t.Errorf("request %q on key %q: Keyward may only call wrapKey and unwrapKey", r.Op, r.KeyID)
		}
	}
	if seen[azureemu.OpWrapKey] == 0 || seen[azureemu.OpUnwrapKey] == 0 {
		t.Errorf("requests %v: want both wrapKey and unwrapKey", seen)
	}
}

// A pinned ciphertext of the current format, wrapped under a fixed
// (imported) Managed HSM key, must unwrap forever.
func TestKnownAnswer(t *testing.T) {
	const (
		version  = "5f0e4f7e1b2c4d3a9e8f7a6b5c4d3e2f"
		material = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		seed     = "6b6579776172642d617a7572656b762d6b6e6f776e2d616e737765722d763121"
	)
	e, p := newProvider(t)
	mat, _ := hex.DecodeString(material)
	key := e.ImportOctKey("kat-hsm", "kat-key", version, mat)
	path := filepath.Join("testdata", "known_answer_a256kw.hex")
	if *update {
		sd, _ := hex.DecodeString(seed)
		w, err := p.Encrypt(t.Context(), key, kms.NewSecret(sd), ec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(w.Ciphertext)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ct, []byte(azurekv.Magic+"\x01\x02")) || !strings.Contains(string(ct), "/keys/kat-key/"+version) {
		t.Fatalf("known-answer ciphertext %x does not have the documented header", ct[:16])
	}
	pt, err := p.Decrypt(t.Context(), key, ct, ec)
	if err != nil {
		t.Fatalf("Decrypt(known answer) err = %v", err)
	}
	defer pt.Destroy()
	if got := hex.EncodeToString(pt.Bytes()); got != seed {
		t.Fatalf("Decrypt(known answer) = %s, want %s", got, seed)
	}
	_, err = p.Decrypt(t.Context(), key, ct, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed))
	checkClass(t, "Decrypt(known answer) with another context", err, kms.CodeInvalidCiphertext)
}
