package ocikms_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/ocikms"
)

const realKeyOCID = "ocid1.key.oc1.iad.bbpr4ltnaaeuk.abuwcljrs6fmbuuxq4zsxd6rwb3ug4zhqmw6tkfgaq2bbtslhbwzbn3kgqza"

func TestValidateKeyOCID(t *testing.T) {
	for _, s := range []string{
		realKeyOCID,
		"ocid1.key.oc1.phx.a5pedbqvaacuk.abyhqljtexample",
		"ocid1.key.oc2.us-langley-1.vault1.id1",
		"ocid1.key.oc19.eu-madrid-2.x.y",
	} {
		if err := ocikms.ValidateKeyOCID(s); err != nil {
			t.Errorf("ValidateKeyOCID(%q) = %v, want nil", s, err)
		}
	}
	for name, s := range map[string]string{
		"empty":            "",
		"vault OCID":       "ocid1.vault.oc1.iad.bbpr4ltnaaeuk.abuwcljr",
		"key version OCID": "ocid1.keyversion.oc1.iad.bbpr4ltnaaeuk.abuwcljr",
		"ocid2":            "ocid2.key.oc1.iad.bbpr4ltnaaeuk.abuwcljr",
		"no region":        "ocid1.key.oc1..bbpr4ltnaaeuk.abuwcljr",
		"docs placeholder": "ocid1.key.region1.sea.exampleaaacu2.examplesmtpsuqmoy4m5cvblugmizcoeu2nfc6b3zfaux2lmqz245gezevsq",
		"uppercase":        "ocid1.key.oc1.iad.BBPR4LTNAAEUK.abuwcljr",
		"five parts":       "ocid1.key.oc1.iad.abuwcljr",
		"seven parts":      "ocid1.key.oc1.iad.a.b.c",
		"space":            "ocid1.key.oc1.iad.bbpr4ltnaaeuk.abu wcljr",
		"region too odd":   "ocid1.key.oc1.useast.bbpr4ltnaaeuk.abuwcljr",
		"long":             "ocid1.key.oc1.iad.v." + strings.Repeat("a", 250),
		"empty id":         "ocid1.key.oc1.iad.bbpr4ltnaaeuk.",
		"trailing newline": realKeyOCID + "\n",
	} {
		err := ocikms.ValidateKeyOCID(s)
		if !errors.Is(err, ocikms.ErrInvalidKeyOCID) {
			t.Errorf("ValidateKeyOCID(%s) = %v, want ErrInvalidKeyOCID", name, err)
		}
	}
}

// FuzzValidateKeyOCID: ValidateKeyOCID never panics; what it accepts has
// the six-part shape and round-trips through kms.ParseKeyURI.
func FuzzValidateKeyOCID(f *testing.F) {
	f.Add(realKeyOCID)
	f.Add("ocid1.key.oc1.us-ashburn-1.v.i")
	f.Add("ocid1.key.oc1..v.i")
	f.Add("ocid1.key.oc1.iad.v.i.j")
	f.Add("")
	f.Add("ocid1.key.oc1.iad.v.i?endpoint=x")
	f.Fuzz(func(t *testing.T, s string) {
		if err := ocikms.ValidateKeyOCID(s); err != nil {
			if !errors.Is(err, ocikms.ErrInvalidKeyOCID) {
				t.Fatalf("ValidateKeyOCID(%q) = %v, not matching ErrInvalidKeyOCID", s, err)
			}
			return
		}
		parts := strings.Split(s, ".")
		if len(parts) != 6 || parts[0] != "ocid1" || parts[1] != "key" || !strings.HasPrefix(parts[2], "oc") {
			t.Fatalf("accepted %q, which is not ocid1.key.oc<n>.<region>.<vault>.<id>", s)
		}
		for i, p := range parts {
			if p == "" {
				t.Fatalf("accepted %q with empty part %d", s, i)
			}
			for _, c := range p {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
					t.Fatalf("accepted %q with character %q", s, c)
				}
			}
		}
		const ep = "https://vaultx-crypto.kms.us-ashburn-1.oraclecloud.com"
		u, err := kms.ParseKeyURI("ocikms://" + s + "?endpoint=" + ep)
		if err != nil {
			t.Fatalf("accepted %q, which kms.ParseKeyURI refuses: %v", s, err)
		}
		if u.KeyID != s || u.Region != "us-ashburn-1" || u.Endpoint != ep {
			t.Fatalf("ParseKeyURI(%q) = %+v", s, u)
		}
		again, err := kms.ParseKeyURI(u.String())
		if err != nil || again != u {
			t.Fatalf("round trip of %q: %+v, %v", u.String(), again, err)
		}
	})
}
