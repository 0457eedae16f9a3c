package events_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/events"
)

func TestPurposes(t *testing.T) {
	want := []events.Purpose{"playback", "transcription", "export", "support", "legal_hold"}
	if !slices.Equal(events.Purposes, want) {
		t.Fatalf("Purposes = %q, want %q", events.Purposes, want)
	}
	for _, p := range events.Purposes {
		if err := events.ValidatePurpose(string(p)); err != nil {
			t.Errorf("ValidatePurpose(%q) = %v, want nil", p, err)
		}
	}
}

// TestPurposesInSchema: the purpose enum of key_access.schema.json is the
// set, in its order.
func TestPurposesInSchema(t *testing.T) {
	_, doc := compile(t, "key_access.schema.json")
	var enum []events.Purpose
	for _, p := range doc["properties"].(map[string]any)["purpose"].(map[string]any)["enum"].([]any) {
		enum = append(enum, events.Purpose(p.(string)))
	}
	if !slices.Equal(enum, events.Purposes) {
		t.Errorf("schema purpose enum %q, Purposes %q", enum, events.Purposes)
	}
}

func TestValidatePurposeRefuses(t *testing.T) {
	for _, p := range []string{"", "Playback", "playback ", "debugging", "legal-hold", "*", strings.Repeat("x", 200)} {
		err := events.ValidatePurpose(p)
		var fe *events.FieldError
		if !errors.Is(err, events.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "purpose" {
			t.Errorf("ValidatePurpose(%q) = %v, want an ErrInvalid FieldError on purpose", p, err)
			continue
		}
		// The error lists the set, and quotes the value clipped.
		for _, q := range events.Purposes {
			if !strings.Contains(fe.Fix, string(q)) {
				t.Errorf("ValidatePurpose(%q) fix = %q, want it to name %q", p, fe.Fix, q)
			}
		}
		if len(err.Error()) > 300 {
			t.Errorf("ValidatePurpose(%d bytes) error is %d bytes long: the value is not clipped", len(p), len(err.Error()))
		}
		if p == "debugging" && !strings.Contains(fe.Problem, `"debugging"`) {
			t.Errorf("ValidatePurpose(%q) problem = %q, want it to name the value", p, fe.Problem)
		}
	}
}
