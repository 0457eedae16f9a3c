package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

func TestKeyObservedValidate(t *testing.T) {
	ok := events.KeyObserved{TenantID: "acme", KeyURI: "awskms://alias/k?region=eu-west-2", Op: "Decrypt", Outcome: "endpoint_unreachable",
		LatencyMS: 12, Worker: "encryptor/a", ObservedAt: time.Now()}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.TenantID, bad.Outcome, bad.Op, bad.LatencyMS, bad.Worker = "Acme", "Endpoint Unreachable", "", -1, ""
	err := bad.Validate()
	for _, field := range []string{"tenant_id", "outcome", "op", "latency_ms", "worker"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	if !errors.Is(err, events.ErrInvalid) {
		t.Errorf("%v does not match ErrInvalid", err)
	}
}

func TestKeyStatusChangedValidate(t *testing.T) {
	e := events.KeyStatusChanged{TenantID: "acme", KeyURI: "k", Status: events.KeyStatusRevoked, Previous: events.KeyStatusAvailable,
		Reason: "key_disabled:pending_deletion", Since: time.Now(), Source: events.SourceProbe}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	e.Status, e.Source, e.Reason = "", "cron", "disabled!"
	err := e.Validate()
	for _, field := range []string{"status", "source", "reason"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
}

// KeyObserved reports arrive from any client on the subject: the decoder
// must refuse anything malformed with a classifiable error and never panic.
func FuzzDecodeKeyObserved(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","key_uri":"awskms://alias/k?region=eu-west-2","op":"Decrypt","outcome":"ok","latency_ms":1.5,"worker":"w","observed_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","outcome":"key_disabled:pending_deletion"}`))
	f.Add([]byte(`{"latency_ms":-1e308}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := events.DecodeKeyObserved(data)
		if err != nil {
			if !errors.Is(err, events.ErrUndecodable) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("error %v is neither undecodable nor invalid", err)
			}
			return
		}
		if strings.ContainsAny(e.TenantID, ".*> \t") {
			t.Fatalf("accepted unsafe tenant id %q", e.TenantID)
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.DecodeKeyObserved(out); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
	})
}
