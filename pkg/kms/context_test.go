package kms_test

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
)

// decodeCanonical inverts EncryptionContext.Canonical; it fails on any input
// Canonical cannot produce. Canonical is injective iff decode(Canonical(m))
// == m for every m.
func decodeCanonical(b []byte) (kms.EncryptionContext, bool) {
	read := func() (string, bool) {
		if len(b) < 4 {
			return "", false
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(len(b)) < uint64(n) {
			return "", false
		}
		s := string(b[:n])
		b = b[n:]
		return s, true
	}
	if len(b) < 4 {
		return nil, false
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	ec := kms.EncryptionContext{}
	prev := ""
	for i := uint32(0); i < n; i++ {
		k, ok1 := read()
		v, ok2 := read()
		if !ok1 || !ok2 || (i > 0 && k <= prev) {
			return nil, false
		}
		ec[k], prev = v, k
	}
	return ec, len(b) == 0
}

func TestCanonicalDistinct(t *testing.T) {
	pairs := []struct{ a, b kms.EncryptionContext }{
		{kms.EncryptionContext{"a": "b=c"}, kms.EncryptionContext{"a=b": "c"}},
		{kms.EncryptionContext{"ab": "c"}, kms.EncryptionContext{"a": "bc"}},
		{kms.EncryptionContext{"a": "b", "c": "d"}, kms.EncryptionContext{"a": "b\x00\x00\x00\x01c\x00\x00\x00\x01d"}},
		{kms.EncryptionContext{"a": "b,c=d"}, kms.EncryptionContext{"a": "b", "c": "d"}},
		{kms.EncryptionContext{"a": ""}, kms.EncryptionContext{}},
		{kms.EncryptionContext{"": "a"}, kms.EncryptionContext{"a": ""}},
		{kms.EncryptionContext{"k": "v"}, kms.EncryptionContext{"K": "v"}},
		{kms.NewEncryptionContext("acme", kms.PurposeAssetSeed), kms.NewEncryptionContext("acme", kms.PurposeProbe)},
		{kms.NewEncryptionContext("acme", kms.PurposeAssetSeed), kms.NewEncryptionContext("acme2", kms.PurposeAssetSeed)},
		{kms.NewEncryptionContext("a", "b"), kms.EncryptionContext{kms.ContextKeyTenant: "a"}},
	}
	for _, p := range pairs {
		if string(p.a.Canonical()) == string(p.b.Canonical()) {
			t.Errorf("Canonical(%q) == Canonical(%q)", p.a, p.b)
		}
	}
	if string(kms.EncryptionContext(nil).Canonical()) != string(kms.EncryptionContext{}.Canonical()) {
		t.Error("nil and empty contexts encode differently")
	}
}

func TestCanonicalKnownAnswer(t *testing.T) {
	got := hex.EncodeToString(kms.NewEncryptionContext("acme", kms.PurposeAssetSeed).Canonical())
	want := "00000002" +
		"0000000f" + hex.EncodeToString([]byte("keyward:purpose")) + "0000000a" + hex.EncodeToString([]byte("asset-seed")) +
		"0000000e" + hex.EncodeToString([]byte("keyward:tenant")) + "00000004" + hex.EncodeToString([]byte("acme"))
	if got != want {
		t.Errorf("Canonical = %s\nwant        %s", got, want)
	}
	if got := hex.EncodeToString(kms.EncryptionContext(nil).Canonical()); got != "00000000" {
		t.Errorf("Canonical(nil) = %s", got)
	}
}

func TestCanonicalRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "ab=,:\x00\x01"
	str := func() string {
		var b strings.Builder
		for range r.IntN(5) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 5000 {
		ec := kms.EncryptionContext{}
		for range r.IntN(4) {
			ec[str()] = str()
		}
		got, ok := decodeCanonical(ec.Canonical())
		if !ok || !maps.Equal(got, ec) {
			t.Fatalf("decode(Canonical(%q)) = %q, %v", ec, got, ok)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add("a", "b=c", "a=b", "c")
	f.Add("", "", "x", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		ec := kms.EncryptionContext{k1: v1, k2: v2}
		got, ok := decodeCanonical(ec.Canonical())
		if !ok || !maps.Equal(got, ec) {
			t.Fatalf("decode(Canonical(%q)) = %q, %v", ec, got, ok)
		}
	})
}

func TestValidateContext(t *testing.T) {
	many := kms.EncryptionContext{}
	for i := range kms.MaxContextPairs + 1 {
		many[string(rune('a'+i))] = "v"
	}
	big := kms.EncryptionContext{}
	for i := range 5 {
		big[string(rune('a'+i))] = strings.Repeat("v", kms.MaxContextValueLen)
	}
	tests := []struct {
		name string
		ec   kms.EncryptionContext
		ok   bool
	}{
		{"nil", nil, true},
		{"keyward", kms.NewEncryptionContext("acme", kms.PurposeAssetSeed), true},
		{"unicode", kms.EncryptionContext{"ключ": "значение"}, true},
		{"empty key", kms.EncryptionContext{"": "v"}, false},
		{"empty value", kms.NewEncryptionContext("", kms.PurposeAssetSeed), false},
		{"NUL in key", kms.EncryptionContext{"a\x00b": "v"}, false},
		{"NUL in value", kms.EncryptionContext{"a": "v\x00"}, false},
		{"invalid UTF-8", kms.EncryptionContext{"a": "\xff"}, false},
		{"long key", kms.EncryptionContext{strings.Repeat("k", kms.MaxContextKeyLen+1): "v"}, false},
		{"long value", kms.EncryptionContext{"k": strings.Repeat("v", kms.MaxContextValueLen+1)}, false},
		{"max value", kms.EncryptionContext{"k": strings.Repeat("v", kms.MaxContextValueLen)}, true},
		{"too many pairs", many, false},
		{"too long in total", big, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ec.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, kms.ErrInvalidContext) {
				t.Errorf("err %v does not match ErrInvalidContext", err)
			}
		})
	}
}

func TestContextAccessors(t *testing.T) {
	ec := kms.NewEncryptionContext("acme", kms.PurposeProbe)
	if ec.Tenant() != "acme" || ec.Purpose() != "key-probe" {
		t.Errorf("Tenant, Purpose = %q, %q", ec.Tenant(), ec.Purpose())
	}
	c := ec.Clone()
	c["x"] = "y"
	if len(ec) != 2 || kms.EncryptionContext(nil).Clone() != nil {
		t.Error("Clone shares the map")
	}
}
