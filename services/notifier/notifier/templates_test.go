package notifier

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

// Data that does not fit a kind's template fails with a TemplateError
// naming what is missing, never an email with holes.
func TestRenderRefusesIncompleteData(t *testing.T) {
	for _, tc := range []struct {
		n    Notice
		want string
	}{
		{Notice{Kind: KindKeyStatus, TenantID: "acme", Subject: "s", Status: "unavailable", Doing: "x"}, "key is empty"},
		{Notice{Kind: KindRotationCompleted, TenantID: "acme", Subject: "s"}, "no key to disable"},
		{Notice{Kind: KindContentRejected, TenantID: "acme", Subject: "s"}, "asset is empty"},
		{Notice{Kind: "unheard_of", TenantID: "acme", Subject: "s"}, "no text template"},
	} {
		_, _, err := render(&tc.n)
		var te *TemplateError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want a TemplateError saying %q", tc.n.Kind, err, tc.want)
		}
	}
}

// Every kind renders, and the HTML part escapes what it shows.
func TestRenderEveryKind(t *testing.T) {
	cfg := &tenant.Config{Fallback: true}
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	doing, action := statusConsequences(events.KeyStatusUnavailable, cfg)
	for _, n := range []*Notice{
		{Kind: KindKeyStatus, KeyURI: "awskms://arn:aws:kms:eu-west-2:1:key/<x>", Status: "unavailable", Previous: "available", ReasonText: "r", Doing: doing, Action: action},
		{Kind: KindKeyEnrolled, KeyURI: "k", Status: "primary"},
		{Kind: KindRotationStarted, FromKeyURI: "a", ToKeyURI: "b"},
		{Kind: KindRotationCompleted, ToKeyURI: "b", Keys: []string{"a"}, Done: 3},
		{Kind: KindDeprovisionScheduled, Scheduled: at},
		{Kind: KindDeprovisionCancelled, Scheduled: at},
		{Kind: KindDeprovisionCompleted, Keys: []string{"a"}, Done: 3},
		{Kind: KindReencryptionCompleted, Purpose: "heal", ToKeyURI: "b", Done: 3},
		{Kind: KindReencryptionStopped, Purpose: "heal", ReasonText: "revoked", Done: 1, Failed: 2},
		{Kind: KindContentRejected, AssetID: "a-1", ReasonText: "away"},
		{Kind: KindTenantChanged, Op: "recipients", ChangedBy: "admin-acme (tenant-admin)", Fields: []string{"recipients"}},
	} {
		n.TenantID, n.Subject, n.EventID, n.At = "acme", "subject <b>", "ev.1", at
		text, html, err := render(n)
		if err != nil {
			t.Fatalf("%s: %v", n.Kind, err)
		}
		if !strings.Contains(text, "acme") || !strings.Contains(text, "ev.1") || strings.Contains(html, "subject <b>") {
			t.Errorf("%s: text %q, html not escaped: %v", n.Kind, text, strings.Contains(html, "subject <b>"))
		}
	}
}
