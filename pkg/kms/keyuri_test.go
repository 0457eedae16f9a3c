package kms

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseKeyURIValid(t *testing.T) {
	tests := []struct {
		in        string
		want      KeyURI
		canonical string // "" means same as in
	}{
		{in: "localkms:///var/lib/keyward/platform.key", want: KeyURI{Scheme: SchemeLocal, KeyID: "/var/lib/keyward/platform.key"}},
		{in: "localkms://keys/demo.key", want: KeyURI{Scheme: SchemeLocal, KeyID: "keys/demo.key"}},
		{
			in:   "awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
			want: KeyURI{Scheme: SchemeAWS, KeyID: "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", Region: "eu-west-2"},
		},
		{
			in:        "awskms:///arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab?endpoint=http://127.0.0.1:8080/",
			want:      KeyURI{Scheme: SchemeAWS, KeyID: "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", Region: "eu-west-2", Endpoint: "http://127.0.0.1:8080"},
			canonical: "awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab?endpoint=http://127.0.0.1:8080",
		},
		{
			in:   "awskms://arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/keyward",
			want: KeyURI{Scheme: SchemeAWS, KeyID: "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/keyward", Region: "us-gov-west-1"},
		},
		{
			in:        "awskms://alias/keyward-tenant?region=us-east-1",
			want:      KeyURI{Scheme: SchemeAWS, KeyID: "alias/keyward-tenant", Region: "us-east-1"},
			canonical: "awskms://alias/keyward-tenant?region=us-east-1",
		},
		{
			in:   "awskms://mrk-1234abcd12ab34cd56ef1234567890ab?region=eu-west-1",
			want: KeyURI{Scheme: SchemeAWS, KeyID: "mrk-1234abcd12ab34cd56ef1234567890ab", Region: "eu-west-1"},
		},
		{
			in: "ocikms://ocid1.key.oc1.iad.bbpgcs4qaacuu.abuwcljrk6d2ulqjuhmrh2mx7yhn7gfnyrxqjbh7kvc5xmwhhp2i7xupcwlq?endpoint=https://bbpgcs4qaacuu-crypto.kms.us-ashburn-1.oraclecloud.com",
			want: KeyURI{Scheme: SchemeOCI, KeyID: "ocid1.key.oc1.iad.bbpgcs4qaacuu.abuwcljrk6d2ulqjuhmrh2mx7yhn7gfnyrxqjbh7kvc5xmwhhp2i7xupcwlq",
				Region: "us-ashburn-1", Endpoint: "https://bbpgcs4qaacuu-crypto.kms.us-ashburn-1.oraclecloud.com"},
		},
		{
			in:   "ocikms://ocid1.key.oc1.phx.vault1.key1?endpoint=http://127.0.0.1:9443&region=us-phoenix-1",
			want: KeyURI{Scheme: SchemeOCI, KeyID: "ocid1.key.oc1.phx.vault1.key1", Region: "us-phoenix-1", Endpoint: "http://127.0.0.1:9443"},
		},
		{
			in:   "azurekv://contoso.vault.azure.net/keys/keyward",
			want: KeyURI{Scheme: SchemeAzure, Vault: "contoso.vault.azure.net", KeyID: "keyward"},
		},
		{
			in:   "azurekv://contoso-hsm.managedhsm.azure.net/keys/keyward/0123456789abcdef0123456789abcdef?endpoint=https://127.0.0.1:8443",
			want: KeyURI{Scheme: SchemeAzure, Vault: "contoso-hsm.managedhsm.azure.net", KeyID: "keyward", Version: "0123456789abcdef0123456789abcdef", Endpoint: "https://127.0.0.1:8443"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKeyURI(tt.in)
			if err != nil {
				t.Fatalf("ParseKeyURI(%q) err = %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseKeyURI(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			want := tt.canonical
			if want == "" {
				want = tt.in
			}
			if got.String() != want {
				t.Errorf("String() = %q, want %q", got.String(), want)
			}
			again, err := ParseKeyURI(got.String())
			if err != nil || again != got {
				t.Errorf("reparse of %q = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseKeyURIInvalid(t *testing.T) {
	tests := []struct {
		in    string
		field string
	}{
		{"", "scheme"},
		{"platform.key", "scheme"},
		{"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "scheme"},
		{"localkms://", "key file path"},
		{"localkms://a/../b.key", "key file path"},
		{"localkms://keys/", "key file path"},
		{"localkms://k.key?create=1", `query parameter "create"`},
		{"awskms://", "key id"},
		{"awskms://alias/x", "region"},
		{"awskms://arn:aws:s3:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "key id"},
		{"awskms://arn:aws:kms:moon-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "region"},
		{"awskms://arn:aws:kms:eu-west-2:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab", "account"},
		{"awskms://arn:aws:kms:eu-west-2:111122223333:key/nope", "key id"},
		{"awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab?region=us-east-1", "region"},
		{"awskms://alias/x?region=eu-west-2&endpoint=ftp://h", "endpoint"},
		{"awskms://alias/x?region=eu-west-2&endpoint=http://user:pw@h", "endpoint"},
		{"awskms://alias/x?region=eu-west-2&secret_access_key=abc", `query parameter "secret_access_key"`},
		{"awskms://alias/x?region=eu-west-2&region=eu-west-1", `query parameter "region"`},
		{"ocikms://ocid1.key.oc1.iad.v.k", "endpoint"},
		{"ocikms://ocid1.vault.oc1.iad.v.k?endpoint=https://v-crypto.kms.us-ashburn-1.oraclecloud.com", "key id"},
		{"ocikms://ocid1.key.oc1.iad.v.k?endpoint=https://v-management.kms.us-ashburn-1.oraclecloud.com", "endpoint"},
		{"ocikms://ocid1.key.oc1.iad.v.k?endpoint=http://127.0.0.1:1", "region"},
		{"ocikms://ocid1.key.oc1.iad.v.k?endpoint=https://v-crypto.kms.us-ashburn-1.oraclecloud.com&region=us-phoenix-1", "region"},
		{"azurekv://contoso.example.com/keys/k", "vault"},
		{"azurekv://contoso.vault.azure.net/secrets/k", "key path"},
		{"azurekv://contoso.vault.azure.net/keys/bad_name", "key name"},
		{"azurekv://contoso.vault.azure.net/keys/k/v1", "key version"},
		{"awskms://alias/x y", "URI"},
		{"awskms://alias/x?region=eu-west-2#frag", "URI"},
		{"localkms://" + strings.Repeat("a", MaxKeyURILen), "URI"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseKeyURI(tt.in)
			if err == nil {
				t.Fatalf("ParseKeyURI(%q) err = nil, want an error about %s", tt.in, tt.field)
			}
			if !errors.Is(err, ErrInvalidKeyURI) {
				t.Errorf("errors.Is(err, ErrInvalidKeyURI) = false for %v", err)
			}
			var ue *URIError
			if !errors.As(err, &ue) {
				t.Fatalf("err %T is not a *URIError", err)
			}
			if ue.Field != tt.field {
				t.Errorf("Field = %q, want %q (err %v)", ue.Field, tt.field, err)
			}
		})
	}
}

func TestParseKeyURIRedactsSecrets(t *testing.T) {
	for _, in := range []string{
		"awskms://alias/x?region=eu-west-2&secret_access_key=AKIAVERYSECRET",
		"awskms://alias/x?region=eu-west-2&endpoint=http://user:AKIAVERYSECRET@h",
	} {
		_, err := ParseKeyURI(in)
		if err == nil {
			t.Fatalf("ParseKeyURI(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), "AKIAVERYSECRET") {
			t.Errorf("error %q leaks the secret", err)
		}
	}
}

func TestKeyURIJSON(t *testing.T) {
	type doc struct {
		Key KeyURI `json:"key"`
	}
	in := doc{Key: MustParseKeyURI("awskms://alias/k?region=eu-west-2")}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"key":"awskms://alias/k?region=eu-west-2"}` {
		t.Errorf("Marshal = %s", b)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("Unmarshal = %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"key":"awskms://nope"}`), &out); !errors.Is(err, ErrInvalidKeyURI) {
		t.Errorf("Unmarshal of invalid URI err = %v, want ErrInvalidKeyURI", err)
	}
}

func TestEndpointID(t *testing.T) {
	a := MustParseKeyURI("awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	b := MustParseKeyURI("awskms://alias/other?region=eu-west-2")
	c := MustParseKeyURI("awskms://alias/other?region=eu-west-1")
	if a.EndpointID() != b.EndpointID() {
		t.Errorf("keys in one region have different endpoints: %q vs %q", a.EndpointID(), b.EndpointID())
	}
	if a.EndpointID() == c.EndpointID() {
		t.Errorf("keys in two regions share endpoint %q", a.EndpointID())
	}
	if strings.Contains(a.EndpointID(), "1234abcd") {
		t.Errorf("EndpointID %q carries the key id", a.EndpointID())
	}
	v1 := MustParseKeyURI("azurekv://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef")
	if v1.Unversioned().String() != "azurekv://contoso.vault.azure.net/keys/k" {
		t.Errorf("Unversioned = %q", v1.Unversioned())
	}
}

func FuzzParseKeyURI(f *testing.F) {
	for _, s := range []string{
		"localkms:///var/k.key",
		"awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab?endpoint=http://127.0.0.1:8080",
		"awskms://alias/x?region=eu-west-2",
		"ocikms://ocid1.key.oc1.iad.v.k?endpoint=https://v-crypto.kms.us-ashburn-1.oraclecloud.com",
		"azurekv://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef",
		"awskms://%zz?region=%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseKeyURI(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyURI) {
				t.Fatalf("ParseKeyURI(%q) err %v does not match ErrInvalidKeyURI", s, err)
			}
			return
		}
		// A parsed URI round-trips through its canonical form.
		c := u.String()
		u2, err := ParseKeyURI(c)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", c, s, err)
		}
		if u2 != u {
			t.Fatalf("canonical %q of %q parses to %+v, want %+v", c, s, u2, u)
		}
		if u2.String() != c {
			t.Fatalf("canonical form not stable: %q then %q", c, u2.String())
		}
	})
}
