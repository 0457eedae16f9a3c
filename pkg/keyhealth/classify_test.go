package keyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keyhealth"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
)

func kmsErr(code kms.Code, err error) error {
	return &kms.Error{Code: code, Provider: kms.SchemeAWS, Op: kms.OpDecrypt, Key: "awskms://k", Err: err}
}

func awsReason(code kms.Code, reason awskms.Reason) error {
	return kmsErr(code, &awskms.ReasonError{Reason: reason, Message: "explained", Err: errors.New("sdk")})
}

func TestClassifierProbe(t *testing.T) {
	c := keyhealth.Classifier{
		SlowThreshold: 100 * time.Millisecond,
		Detail:        func(err error) string { return string(awskms.ReasonOf(err)) },
	}
	canceled := kmsErr(kms.CodeInternal, fmt.Errorf("caller's context ended: %w", context.Canceled))
	cases := []struct {
		name    string
		err     error
		latency time.Duration
		class   keyhealth.Class
		status  events.KeyStatus
		reason  string
	}{
		{"ok", nil, 10 * time.Millisecond, keyhealth.ClassOK, events.KeyStatusAvailable, "ok"},
		{"ok at threshold", nil, 100 * time.Millisecond, keyhealth.ClassOK, events.KeyStatusAvailable, "ok"},
		{"slow", nil, 101 * time.Millisecond, keyhealth.ClassSlow, events.KeyStatusDegraded, "slow"},
		{"throttled", kmsErr(kms.CodeThrottled, nil), time.Millisecond, keyhealth.ClassThrottled, events.KeyStatusDegraded, "throttled"},
		{"unreachable", kmsErr(kms.CodeEndpointUnreachable, nil), time.Second, keyhealth.ClassUnreachable, events.KeyStatusUnavailable, "endpoint_unreachable"},
		{"disabled", awsReason(kms.CodeKeyDisabled, awskms.ReasonKeyDisabled), 0, keyhealth.ClassKeyUnusable, events.KeyStatusRevoked, "key_disabled"},
		{"pending deletion", awsReason(kms.CodeKeyDisabled, awskms.ReasonKeyPendingDeletion), 0, keyhealth.ClassKeyUnusable, events.KeyStatusRevoked, "key_disabled:key_pending_deletion"},
		{"denied", awsReason(kms.CodeAccessDenied, awskms.ReasonNotAllowed), 0, keyhealth.ClassKeyUnusable, events.KeyStatusRevoked, "access_denied:not_allowed"},
		{"not found", awsReason(kms.CodeKeyNotFound, awskms.ReasonKeyNotFound), 0, keyhealth.ClassKeyUnusable, events.KeyStatusRevoked, "key_not_found"},
		{"not found without reason", kmsErr(kms.CodeKeyNotFound, nil), 0, keyhealth.ClassKeyUnusable, events.KeyStatusRevoked, "key_not_found"},
		{"invalid ciphertext of a fresh round trip", kmsErr(kms.CodeInvalidCiphertext, nil), 0, keyhealth.ClassFailed, events.KeyStatusUnavailable, "invalid_ciphertext"},
		{"invalid argument", kmsErr(kms.CodeInvalidArgument, nil), 0, keyhealth.ClassInconclusive, events.KeyStatusUnknown, "invalid_argument"},
		{"internal", kmsErr(kms.CodeInternal, nil), 0, keyhealth.ClassInconclusive, events.KeyStatusUnknown, "internal"},
		{"not a kms error", errors.New("boom"), 0, keyhealth.ClassInconclusive, events.KeyStatusUnknown, "internal"},
		{"canceled", canceled, 0, keyhealth.ClassInconclusive, events.KeyStatusUnknown, "internal"},
		{"refused by the own rate limiter", kmsErr(kms.CodeThrottled, kms.ErrRateLimited), 0, keyhealth.ClassInconclusive, events.KeyStatusUnknown, "throttled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Probe(tc.err, tc.latency)
			if r.Class != tc.class || r.Status() != tc.status || r.Reason != tc.reason {
				t.Errorf("Probe(%v) = %s/%s/%q, want %s/%s/%q", tc.err, r.Class, r.Status(), r.Reason, tc.class, tc.status, tc.reason)
			}
			if r.Source != events.SourceProbe || r.Latency != tc.latency {
				t.Errorf("source %q latency %v", r.Source, r.Latency)
			}
			if r.Class != keyhealth.ClassInconclusive {
				ev := events.KeyStatusChanged{TenantID: "acme", KeyURI: "awskms://k", Status: r.Status(), Reason: r.Reason, Since: time.Now(), Source: r.Source}
				if err := ev.Validate(); err != nil {
					t.Errorf("reason %q does not make a valid event: %v", r.Reason, err)
				}
			}
		})
	}
	m := c.Mismatch(time.Millisecond)
	if m.Status() != events.KeyStatusUnavailable || m.Reason != "invalid_ciphertext:round_trip_mismatch" {
		t.Errorf("Mismatch = %s %q", m.Status(), m.Reason)
	}
}

func TestClassifierDetailIsSanitised(t *testing.T) {
	for detail, want := range map[string]string{
		"":                 "key_disabled",
		"key_disabled":     "key_disabled",
		"Pending.Deletion": "key_disabled",
		"x2":               "key_disabled",
		"a_very_long_reason_that_is_longer_than_thirty_two": "key_disabled",
		"pending_deletion": "key_disabled:pending_deletion",
	} {
		c := keyhealth.Classifier{Detail: func(error) string { return detail }}
		if got := c.Probe(kmsErr(kms.CodeKeyDisabled, nil), 0).Reason; got != want {
			t.Errorf("detail %q: reason %q, want %q", detail, got, want)
		}
	}
}

func TestClassifierOutcome(t *testing.T) {
	c := keyhealth.Classifier{SlowThreshold: 50 * time.Millisecond}
	cases := []struct {
		outcome string
		latency time.Duration
		status  events.KeyStatus
		class   keyhealth.Class
		reason  string
	}{
		{"ok", time.Millisecond, events.KeyStatusAvailable, keyhealth.ClassOK, "ok"},
		{"ok", time.Second, events.KeyStatusDegraded, keyhealth.ClassSlow, "slow"},
		{"slow", 0, events.KeyStatusDegraded, keyhealth.ClassSlow, "slow"},
		{"throttled", 0, events.KeyStatusDegraded, keyhealth.ClassThrottled, "throttled"},
		{"endpoint_unreachable", 0, events.KeyStatusUnavailable, keyhealth.ClassUnreachable, "endpoint_unreachable"},
		{"key_disabled", 0, events.KeyStatusRevoked, keyhealth.ClassKeyUnusable, "key_disabled"},
		{"key_disabled:key_pending_deletion", 0, events.KeyStatusRevoked, keyhealth.ClassKeyUnusable, "key_disabled:key_pending_deletion"},
		{"access_denied", 0, events.KeyStatusRevoked, keyhealth.ClassKeyUnusable, "access_denied"},
		{"key_not_found", 0, events.KeyStatusRevoked, keyhealth.ClassKeyUnusable, "key_not_found"},
		// A worker's bad blob says nothing about the key.
		{"invalid_ciphertext", 0, events.KeyStatusUnknown, keyhealth.ClassInconclusive, "invalid_ciphertext"},
		{"internal", 0, events.KeyStatusUnknown, keyhealth.ClassInconclusive, "internal"},
	}
	for _, tc := range cases {
		r, err := c.Outcome(tc.outcome, tc.latency)
		if err != nil {
			t.Errorf("Outcome(%q): %v", tc.outcome, err)
			continue
		}
		if r.Status() != tc.status || r.Class != tc.class || r.Reason != tc.reason || r.Source != events.SourceObservation {
			t.Errorf("Outcome(%q) = %s/%s/%q/%s, want %s/%s/%q", tc.outcome, r.Class, r.Status(), r.Reason, r.Source, tc.class, tc.status, tc.reason)
		}
	}
	for _, bad := range []string{"", "fine", "ok:really", "breaker_open", "OK"} {
		if _, err := c.Outcome(bad, 0); !errors.Is(err, keyhealth.ErrUnknownOutcome) {
			t.Errorf("Outcome(%q) err = %v, want ErrUnknownOutcome", bad, err)
		}
	}
}

func TestResultCode(t *testing.T) {
	r := keyhealth.Result{Reason: "key_disabled:key_pending_deletion"}
	if r.Code() != "key_disabled" {
		t.Errorf("Code = %q", r.Code())
	}
}

// FuzzClassifierOutcome: an observation's outcome is untrusted text (it
// passed only the event's pattern). Whatever it is, Outcome either refuses
// it with ErrUnknownOutcome or returns a result whose reason makes a valid
// KeyStatusChanged.
func FuzzClassifierOutcome(f *testing.F) {
	for _, s := range []string{"ok", "slow", "throttled", "key_disabled:key_pending_deletion", "ok:x", "", ":", "key_disabled:", "internal:a:b", "endpoint_unreachable:Bad.Reason"} {
		f.Add(s, int64(5))
	}
	c := keyhealth.Classifier{}
	f.Fuzz(func(t *testing.T, outcome string, latencyMS int64) {
		r, err := c.Outcome(outcome, time.Duration(latencyMS)*time.Millisecond)
		if err != nil {
			if !errors.Is(err, keyhealth.ErrUnknownOutcome) {
				t.Fatalf("Outcome(%q) err = %v, want ErrUnknownOutcome", outcome, err)
			}
			return
		}
		if r.Class == keyhealth.ClassInconclusive {
			return
		}
		ev := events.KeyStatusChanged{TenantID: "acme", KeyURI: "awskms://k", Status: r.Status(), Reason: r.Reason, Since: time.Now(), Source: r.Source}
		if err := ev.Validate(); err != nil {
			t.Fatalf("Outcome(%q) = %+v: invalid event: %v", outcome, r, err)
		}
	})
}
