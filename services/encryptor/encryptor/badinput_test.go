package encryptor_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/services/encryptor/encryptor"
)

// TestBadInputIsDeadLettered: each kind of bad input lands in KW_DLQ once,
// with its reason, on the first delivery; the producer (if identifiable)
// gets AssetRejected; and the consumer keeps going.
func TestBadInputIsDeadLettered(t *testing.T) {
	s := newStack(t, func(o *encryptor.Options) { o.MaxInlineBytes = 1024 })
	s.enroll("acme")
	ctx := context.Background()
	valid := func(asset string) map[string]any {
		return map[string]any{
			"tenant_id": "acme", "asset_id": asset, "service": "team_chat", "owner_user_id": "u1",
			"origin": "cloud", "created_at": time.Now().UTC().Format(time.RFC3339Nano),
			"content": map[string]any{"inline": base64.StdEncoding.EncodeToString([]byte("hello"))},
		}
	}
	cases := []struct {
		name    string
		subject string
		body    func() []byte
		reason  events.Reason
		// rejected: the AssetRejected the producer should get (empty: none)
		rejected events.Reason
		detail   string
	}{
		{"garbage", "keyward.asset.created.acme", func() []byte { return []byte("\x00\xffnot json at all") }, events.ReasonUndecodable, "", "not valid JSON"},
		{"wrong shape", "keyward.asset.created.acme", func() []byte { return []byte(`["an","array"]`) }, events.ReasonUndecodable, "", "want an object"},
		{"schema-invalid", "keyward.asset.created.acme", func() []byte {
			m := valid("bad-origin")
			m["origin"] = "usb_stick"
			b, _ := json.Marshal(m)
			return b
		}, events.ReasonInvalidEvent, events.ReasonInvalidEvent, "origin"},
		{"unknown field", "keyward.asset.created.acme", func() []byte {
			m := valid("typo")
			m["tenant"] = "acme"
			b, _ := json.Marshal(m)
			return b
		}, events.ReasonUndecodable, "", `unknown field "tenant"`},
		{"tenant mismatch", "keyward.asset.created.acme", func() []byte {
			m := valid("mismatch")
			m["tenant_id"] = "globex"
			b, _ := json.Marshal(m)
			return b
		}, events.ReasonTenantMismatch, events.ReasonInvalidEvent, `differs from payload tenant_id "globex"`},
		{"missing staging object", "keyward.asset.created.acme", func() []byte {
			m := valid("missing")
			m["content"] = map[string]any{"bucket": "KW_STAGING", "object": "acme/never-staged"}
			b, _ := json.Marshal(m)
			return b
		}, events.ReasonContentMissing, events.ReasonContentMissing, "does not exist"},
		{"another tenant's staging object", "keyward.asset.created.acme", func() []byte {
			m := valid("steal")
			m["content"] = map[string]any{"bucket": "KW_STAGING", "object": "globex/secret"}
			b, _ := json.Marshal(m)
			return b
		}, events.ReasonInvalidEvent, events.ReasonInvalidEvent, "tenant's prefix"},
		{"oversized inline", "keyward.asset.created.acme", func() []byte {
			m := valid("too-big")
			m["content"] = map[string]any{"inline": base64.StdEncoding.EncodeToString(make([]byte, 2000))}
			b, _ := json.Marshal(m)
			return b
		}, events.ReasonContentTooLarge, events.ReasonContentTooLarge, "inline limit"},
		{"digest mismatch", "keyward.asset.created.acme", func() []byte {
			m := valid("wrong-sha")
			m["sha256"] = strings.Repeat("0", 64)
			b, _ := json.Marshal(m)
			return b
		}, events.ReasonContentMismatch, events.ReasonContentMismatch, "sha256"},
		{"invalid subject tenant", "keyward.asset.created.Acme", func() []byte { b, _ := json.Marshal(valid("x")); return b }, events.ReasonInvalidEvent, "", "tenant_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(s.dlq())
			inbox := nats.NewInbox()
			sub, err := s.env.NC.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			msg := nats.NewMsg(c.subject)
			msg.Data = c.body()
			msg.Header.Set(events.HeaderNotify, inbox)
			if _, err := s.env.JS.PublishMsg(ctx, msg); err != nil {
				t.Fatal(err)
			}
			var dl *events.DeadLetter
			s.eventually("the dead letter", func() bool {
				all := s.dlq()
				if len(all) > before {
					dl = all[len(all)-1]
					return true
				}
				return false
			})
			if dl.Reason != c.reason || dl.Subject != c.subject || dl.Deliveries != 1 || dl.Worker != "encryptor" {
				t.Fatalf("dead letter = reason %s subject %s deliveries %d worker %s, want reason %s on the first delivery", dl.Reason, dl.Subject, dl.Deliveries, dl.Worker, c.reason)
			}
			if !strings.Contains(dl.Detail, c.detail) {
				t.Errorf("detail %q does not mention %q", dl.Detail, c.detail)
			}
			if strings.Contains(string(dl.Data), base64.StdEncoding.EncodeToString([]byte("hello"))) {
				t.Errorf("inline plaintext kept in the dead letter: %s", dl.Data)
			}
			// The outcome is sent before the dead letter is stored, so by now
			// it has arrived if there is one.
			wait := 2 * time.Second
			if c.rejected == "" {
				wait = 200 * time.Millisecond
			}
			m, err := sub.NextMsg(wait)
			if c.rejected == "" {
				if err == nil {
					t.Errorf("unexpected outcome notification %s", m.Data)
				}
				return
			}
			if err != nil {
				t.Fatalf("no AssetRejected for the producer: %v", err)
			}
			rej, err := events.DecodeAssetRejected(m.Data)
			if err != nil || rej.Reason != c.rejected || rej.TenantID != "acme" {
				t.Fatalf("outcome = %+v, %v; want rejection %s for acme", rej, err, c.rejected)
			}
		})
	}
	// Nothing was retried: every dead letter came from a first delivery, and
	// the consumer has nothing pending or in flight.
	for _, d := range s.dlq() {
		if d.Deliveries != 1 {
			t.Errorf("%s was delivered %d times", d.Reason, d.Deliveries)
		}
	}
	cons, err := s.env.JS.Consumer(ctx, events.StreamIngest, events.ConsumerEncryptor)
	if err != nil {
		t.Fatal(err)
	}
	s.eventually("the consumer to settle everything", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
	// And it keeps going.
	if e := s.mustEncrypt("acme", "after-the-storm", []byte("fine")); e.Mode != events.ModeCustomer {
		t.Fatalf("valid asset after bad input: %+v", e)
	}
}
