package kms_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
)

// secretBytes is distinctive in every representation fmt might produce.
var secretBytes = []byte("TOPSECRET-key-material-0123456789")

// leaks reports whether s shows secretBytes raw, in hex (either case), as a
// decimal byte list, or as a Go byte-slice literal.
func leaks(s string) bool {
	reps := []string{
		"TOPSECRET",
		hex.EncodeToString(secretBytes[:8]),
		strings.ToUpper(hex.EncodeToString(secretBytes[:8])),
		"84 79 80 83",  // decimal %v of a []byte
		"0x54, 0x4f",   // %#v of a []byte
		"VE9QU0VDUkVU", // base64
	}
	for _, r := range reps {
		if strings.Contains(s, r) {
			return true
		}
	}
	return false
}

func newTestSecret() *kms.Secret { return kms.NewSecret(bytes.Clone(secretBytes)) }

func TestSecretFormatting(t *testing.T) {
	s := newTestSecret()
	type holder struct {
		Key    *kms.Secret
		hidden *kms.Secret
		value  kms.Secret
	}
	values := map[string]any{
		"pointer":           s,
		"value":             *s,
		"struct":            holder{Key: s, hidden: s, value: *s},
		"pointer to struct": &holder{Key: s, hidden: s, value: *s},
		"slice":             []*kms.Secret{s},
		"map":               map[string]*kms.Secret{"k": s},
		"data key":          &kms.DataKey{Plaintext: s, Ciphertext: []byte("ct"), KeyVersion: "1"},
		"seed":              kms.Seed{Plaintext: s, KeyVersion: "1"},
		"nil pointer":       (*kms.Secret)(nil),
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d", "%T %v", "%10.3v"}
	for name, v := range values {
		for _, verb := range verbs {
			out := fmt.Sprintf(verb, v)
			if leaks(out) {
				t.Errorf("Sprintf(%q, %s) = %q leaks the secret", verb, name, out)
			}
		}
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q", "%d"} {
		if got := fmt.Sprintf(verb, s); got != "kms.Secret(redacted)" {
			t.Errorf("Sprintf(%q, secret) = %q, want kms.Secret(redacted)", verb, got)
		}
	}
	if got := s.String() + s.GoString(); got != "kms.Secret(redacted)kms.Secret(redacted)" {
		t.Errorf("String, GoString = %q", got)
	}
	if fmt.Sprint(s) != "kms.Secret(redacted)" || fmt.Sprintln(s) != "kms.Secret(redacted)\n" {
		t.Errorf("Sprint = %q", fmt.Sprint(s))
	}
}

func TestSecretSlog(t *testing.T) {
	s := newTestSecret()
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(h(&buf))
		log.Info("msg", "secret", s, slog.Any("any", s), "dk", &kms.DataKey{Plaintext: s},
			slog.Group("g", "s", s), "list", []*kms.Secret{s})
		out := buf.String()
		if leaks(out) {
			t.Errorf("%s log %q leaks the secret", name, out)
		}
		if !strings.Contains(out, "kms.Secret(redacted)") {
			t.Errorf("%s log %q does not say redacted", name, out)
		}
	}
	if v := s.LogValue(); v.String() != "kms.Secret(redacted)" {
		t.Errorf("LogValue = %v", v)
	}
}

func TestSecretRefusesMarshalling(t *testing.T) {
	s := newTestSecret()
	for name, v := range map[string]any{
		"pointer":  s,
		"data key": &kms.DataKey{Plaintext: s},
		"seed":     &kms.Seed{Plaintext: s},
		"map":      map[string]*kms.Secret{"k": s},
	} {
		b, err := json.Marshal(v)
		if !errors.Is(err, kms.ErrSecretNotSerializable) {
			t.Errorf("json.Marshal(%s) = %q, %v; want ErrSecretNotSerializable", name, b, err)
		}
		if leaks(string(b)) {
			t.Errorf("json.Marshal(%s) leaks: %q", name, b)
		}
	}
	// A Secret value cannot reach its method set without a pointer; it
	// still shows nothing.
	b, _ := json.Marshal(struct{ S kms.Secret }{*s})
	if leaks(string(b)) {
		t.Errorf("json.Marshal of a Secret value leaks: %s", b)
	}
	if _, err := s.MarshalText(); !errors.Is(err, kms.ErrSecretNotSerializable) {
		t.Errorf("MarshalText err = %v", err)
	}
	if _, err := s.MarshalJSON(); !errors.Is(err, kms.ErrSecretNotSerializable) {
		t.Errorf("MarshalJSON err = %v", err)
	}
}

func TestSecretLifecycle(t *testing.T) {
	raw := bytes.Clone(secretBytes)
	s := kms.NewSecret(raw)
	if s.Len() != len(secretBytes) || !bytes.Equal(s.Bytes(), secretBytes) {
		t.Fatalf("Bytes = %d bytes", s.Len())
	}
	c := s.Clone()
	if !c.Equal(s) || &c.Bytes()[0] == &s.Bytes()[0] {
		t.Fatal("Clone is not an equal, independent copy")
	}
	s.Destroy()
	if s.Len() != 0 || s.Bytes() != nil {
		t.Errorf("after Destroy Len = %d", s.Len())
	}
	if !bytes.Equal(raw, make([]byte, len(raw))) {
		t.Errorf("Destroy did not zero the bytes: %q", raw)
	}
	if !bytes.Equal(c.Bytes(), secretBytes) {
		t.Error("Destroy of the original changed the clone")
	}
	s.Destroy() // twice is fine
	var nilSecret *kms.Secret
	nilSecret.Destroy()
	if nilSecret.Len() != 0 || nilSecret.Bytes() != nil || nilSecret.Clone().Len() != 0 {
		t.Error("nil Secret is not empty")
	}
	if c.Equal(s) || !nilSecret.Equal(s) {
		t.Error("Equal of destroyed secrets is wrong")
	}
	var dk *kms.DataKey
	dk.Destroy() // nil-safe
}
