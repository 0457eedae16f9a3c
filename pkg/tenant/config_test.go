package tenant

import (
	"testing"
	"time"
)

// A completed rotation removes the retired key; CoveredFrom keeps the
// coverage start where it was.
func TestCoveredSinceKeepsRetiredEnrollment(t *testing.T) {
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rotated := first.AddDate(0, 6, 0)
	c := &Config{Keys: []Key{{URI: "a", Role: RolePrimary, EnrolledAt: rotated}}}
	if got := c.CoveredSince(); !got.Equal(rotated) {
		t.Fatalf("without CoveredFrom: %v", got)
	}
	c.CoveredFrom = &first
	if got := c.CoveredSince(); !got.Equal(first) {
		t.Fatalf("with CoveredFrom: %v, want %v", got, first)
	}
	later := rotated.AddDate(0, 1, 0)
	c.CoveredFrom = &later
	if got := c.CoveredSince(); !got.Equal(rotated) {
		t.Fatalf("a later CoveredFrom moved the start: %v", got)
	}
	c.Keys = nil
	if got := c.CoveredSince(); !got.IsZero() {
		t.Fatalf("no keys: %v, want zero", got)
	}
}
