package keybroker_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/keybroker"
)

func TestSealOpen(t *testing.T) {
	key, err := cobblestone.MessageKeyFromBytes(bytes.Repeat([]byte{7}, 44))
	if err != nil {
		t.Fatal(err)
	}
	r, err := keybroker.NewRecipient()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := keybroker.Seal(r.PublicKey(), "acme", "a1", key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, bytes.Repeat([]byte{7}, 8)) {
		t.Fatal("sealed key contains the key in the clear")
	}
	got, err := r.Open(sealed, "acme", "a1")
	if err != nil || !bytes.Equal(got.Bytes(), key.Bytes()) {
		t.Fatalf("Open = %v", err)
	}
	// Bound to tenant and asset, and to this recipient.
	for _, c := range [][2]string{{"acme", "a2"}, {"globex", "a1"}, {"acm", "ea1"}} {
		if _, err := r.Open(sealed, c[0], c[1]); err == nil {
			t.Errorf("opened for %s/%s", c[0], c[1])
		}
	}
	other, _ := keybroker.NewRecipient()
	if _, err := other.Open(sealed, "acme", "a1"); err == nil {
		t.Error("another recipient opened the key")
	}
	if _, err := keybroker.Seal([]byte("short"), "acme", "a1", key); err == nil {
		t.Error("sealed to an invalid public key")
	}
}

func TestErrorClassification(t *testing.T) {
	e := &keybroker.Error{Code: keybroker.CodeAssetNotFound, Message: "x"}
	if !errors.Is(e, keybroker.ErrBroker) || !e.Retryable() {
		t.Errorf("%v", e)
	}
	if (&keybroker.Error{Code: keybroker.CodePrefixMismatch}).Retryable() {
		t.Error("prefix mismatch is retryable")
	}
	if !(&keybroker.Error{Code: keybroker.CodePrefixMismatch}).RetryAfterReopen() {
		t.Error("prefix mismatch is not retried after re-reading the prefix")
	}
	for _, code := range []string{keybroker.CodeAssetNotFound, keybroker.CodeKeyRevoked, keybroker.CodeTenantMismatch, keybroker.CodeInvalidRequest} {
		if (&keybroker.Error{Code: code}).RetryAfterReopen() {
			t.Errorf("%s is retried after re-reading the prefix", code)
		}
	}
}
