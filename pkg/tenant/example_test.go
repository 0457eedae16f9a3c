package tenant_test

import (
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

func ExampleDecide() {
	cfg, err := tenant.Parse([]byte(`{
	  "tenant_id": "acme",
	  "keys": [{"uri": "awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
	            "role": "primary", "enrolled_at": "2026-01-15T09:00:00Z"}],
	  "services": ["cloud_recording"],
	  "licensed_users": ["*"],
	  "fallback_enabled": false,
	  "phone": {"drop_calls": true}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	recording := tenant.Asset{
		Service:     "cloud_recording",
		OwnerUserID: "u-42",
		Origin:      events.OriginCloud,
		CreatedAt:   time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	show := func(what string, d tenant.Decision) {
		if d.Reject {
			fmt.Printf("%-22s reject (%s)\n", what, d.Reason)
			return
		}
		line := fmt.Sprintf("%s (%s)", d.Mode, d.Coverage)
		if d.KeyURI != "" {
			line += " " + d.KeyURI
		}
		fmt.Printf("%-22s %s\n", what, line)
	}

	show("key available:", tenant.Decide(cfg, recording, events.KeyStatusAvailable))
	show("key unreachable:", tenant.Decide(cfg, recording, events.KeyStatusUnavailable))
	show("key revoked:", tenant.Decide(cfg, recording, events.KeyStatusRevoked))

	chat := recording
	chat.Service = "team_chat"
	show("service not selected:", tenant.Decide(cfg, chat, events.KeyStatusAvailable))

	old := recording
	old.CreatedAt = time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
	show("before enrollment:", tenant.Decide(cfg, old, events.KeyStatusAvailable))

	cfg.Fallback = true
	show("unreachable, fallback:", tenant.Decide(cfg, recording, events.KeyStatusUnavailable))

	// Output:
	// key available:         customer (covered) awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
	// key unreachable:       reject (customer_key_unavailable)
	// key revoked:           reject (customer_key_revoked)
	// service not selected:  platform (service_not_selected)
	// before enrollment:     platform (before_enrollment)
	// unreachable, fallback: fallback (covered)
}
