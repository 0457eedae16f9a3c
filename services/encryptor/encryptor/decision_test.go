package encryptor_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/pkg/tenant"
)

// TestDecisionTable runs every row of the encryption decision through the
// real pipeline and checks the outcome event, the ledger, the ciphertext's
// header and the staging copy.
func TestDecisionTable(t *testing.T) {
	s := newStack(t)
	big := pattern(400<<10, 3) // staged, not inline

	type want struct {
		mode     events.Mode
		coverage string
		reason   events.Reason // rejection
	}
	withService := func(svc string) putOpt { return func(a *producer.Asset) { a.Service = svc } }
	withOwner := func(u string) putOpt { return func(a *producer.Asset) { a.OwnerUserID = u } }
	withOrigin := func(o events.Origin) putOpt { return func(a *producer.Asset) { a.Origin = o } }
	createdAt := func(t time.Time) putOpt { return func(a *producer.Asset) { a.CreatedAt = t } }

	// Tenants for the rows.
	covered := s.enroll("covered")
	s.enroll("selective", func(c *tenant.Config) {
		c.Services = []string{"meeting_chat"}
		c.LicensedUsers = []string{"u-licensed"}
	})
	s.enroll("future", func(c *tenant.Config) { c.Keys[0].EnrolledAt = time.Now().Add(24 * time.Hour).UTC() })
	down := s.enroll("down")
	s.setStatus("down", down, events.KeyStatusUnavailable)
	downStrict := s.enroll("down-strict", func(c *tenant.Config) { c.Fallback = false })
	s.setStatus("down-strict", downStrict, events.KeyStatusUnavailable)
	revokedKV := s.enroll("revoked-kv")
	s.setStatus("revoked-kv", revokedKV, events.KeyStatusRevoked)
	revokedLive := s.enroll("revoked-live") // the key file is disabled below: seen only by the live KMS call
	if err := localkms.SetDisabled(revokedLive.KeyID, true); err != nil {
		t.Fatal(err)
	}
	deleted := s.enroll("deleted-live", func(c *tenant.Config) { c.Fallback = true })
	if err := removeFile(deleted.KeyID); err != nil {
		t.Fatal(err)
	}
	s.apply(&tenant.Config{
		TenantID: "aws-tenant",
		Keys: []tenant.Key{{URI: "awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
			Role: tenant.RolePrimary, EnrolledAt: time.Now().Add(-time.Hour).UTC()}},
		Services: []string{"*"}, LicensedUsers: []string{"*"}, Fallback: true,
	})
	degraded := s.enroll("degraded")
	s.setStatus("degraded", degraded, events.KeyStatusDegraded)
	// The boundary: an asset created at the instant of enrollment is covered,
	// one created a second earlier is not. Both times are fixed here, not
	// read from the clock when the row runs.
	enrolledAt := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	boundary := s.enroll("boundary", func(c *tenant.Config) { c.Keys[0].EnrolledAt = enrolledAt })

	rows := []struct {
		name   string
		tenant string
		opts   []putOpt
		want   want
		key    kms.KeyURI
	}{
		{"tenant never enrolled", "stranger", nil, want{mode: events.ModePlatform, coverage: "not_enrolled"}, s.platform},
		{"created before enrollment", "future", nil, want{mode: events.ModePlatform, coverage: "before_enrollment"}, s.platform},
		{"service not selected", "selective", []putOpt{withService("cloud_recording"), withOwner("u-licensed")}, want{mode: events.ModePlatform, coverage: "service_not_selected"}, s.platform},
		{"owner not licensed", "selective", []putOpt{withService("meeting_chat"), withOwner("u-other")}, want{mode: events.ModePlatform, coverage: "user_not_licensed"}, s.platform},
		{"local upload", "covered", []putOpt{withOrigin(events.OriginLocalUpload)}, want{mode: events.ModePlatform, coverage: "local_upload"}, s.platform},
		{"covered and selected", "selective", []putOpt{withService("meeting_chat"), withOwner("u-licensed")}, want{mode: events.ModeCustomer, coverage: "covered"}, kms.KeyURI{}},
		{"covered, key available", "covered", nil, want{mode: events.ModeCustomer, coverage: "covered"}, covered},
		{"covered, key degraded", "degraded", nil, want{mode: events.ModeCustomer, coverage: "covered"}, degraded},
		{"key unavailable, fallback on", "down", nil, want{mode: events.ModeFallback, coverage: "covered"}, s.fallback},
		{"key unavailable, fallback off", "down-strict", nil, want{reason: events.ReasonCustomerKeyUnavailable}, kms.KeyURI{}},
		{"key's provider not in this build, fallback on", "aws-tenant", nil, want{mode: events.ModeFallback, coverage: "covered"}, s.fallback},
		{"key revoked (status)", "revoked-kv", nil, want{reason: events.ReasonCustomerKeyRevoked}, kms.KeyURI{}},
		{"key revoked (live: disabled)", "revoked-live", nil, want{reason: events.ReasonCustomerKeyRevoked}, kms.KeyURI{}},
		{"key revoked (live: deleted), fallback on", "deleted-live", nil, want{reason: events.ReasonCustomerKeyRevoked}, kms.KeyURI{}},
		{"asset created at the instant of enrollment", "boundary", []putOpt{createdAt(enrolledAt)}, want{mode: events.ModeCustomer, coverage: "covered"}, boundary},
		{"asset created a second before enrollment", "boundary", []putOpt{createdAt(enrolledAt.Add(-time.Second))}, want{mode: events.ModePlatform, coverage: "before_enrollment"}, s.platform},
	}
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			assetID := "row-" + string(rune('a'+i))
			out := s.put(row.tenant, assetID, big, row.opts...)
			if row.want.reason != "" {
				if out.Rejected == nil {
					t.Fatalf("want rejection %s, got %+v", row.want.reason, out.Encrypted)
				}
				if out.Rejected.Reason != row.want.reason {
					t.Fatalf("rejection reason %s, want %s (detail %q)", out.Rejected.Reason, row.want.reason, out.Rejected.Detail)
				}
				if !strings.Contains(out.Rejected.Detail, "not stored") {
					t.Errorf("detail %q does not say the content was not stored", out.Rejected.Detail)
				}
				if s.stagingExists(row.tenant + "/" + assetID) {
					t.Error("rejected content's staging copy was not deleted")
				}
				if _, err := s.vault.Info(context.Background(), row.tenant+"/"+assetID); err == nil {
					t.Error("rejected content was stored in the vault")
				}
				rec, err := s.ledger.Get(context.Background(), row.tenant, assetID)
				if err != nil || rec.State != ledger.StateRejected || rec.RejectReason != string(row.want.reason) {
					t.Errorf("ledger = %+v, %v", rec, err)
				}
				return
			}
			if out.Encrypted == nil {
				t.Fatalf("want mode %s, rejected: %+v", row.want.mode, out.Rejected)
			}
			e := out.Encrypted
			if e.Mode != row.want.mode || e.Coverage != row.want.coverage {
				t.Fatalf("mode %s coverage %s, want %s %s", e.Mode, e.Coverage, row.want.mode, row.want.coverage)
			}
			if !row.key.IsZero() && e.KeyURI != row.key.String() {
				t.Fatalf("key %s, want %s", e.KeyURI, row.key)
			}
			if e.PendingReencryption != (e.Mode == events.ModeFallback) {
				t.Errorf("pending_reencryption = %v for mode %s", e.PendingReencryption, e.Mode)
			}
			rec, err := s.ledger.Get(context.Background(), row.tenant, assetID)
			if err != nil || rec.Mode != e.Mode || rec.KeyURI != e.KeyURI || rec.Reencrypt != e.PendingReencryption {
				t.Fatalf("ledger = %+v, %v", rec, err)
			}
			// The ciphertext's own header names the same key.
			ra, err := s.vault.OpenReaderAt(context.Background(), e.Location.Object)
			if err != nil {
				t.Fatal(err)
			}
			p, err := envelope.ReadPrefix(ra, ra.Size())
			if err != nil || p.Header.KeyURI != e.KeyURI {
				t.Fatalf("ciphertext header names %v (%v), want %s", p, err, e.KeyURI)
			}
			got, err := s.get(row.tenant, assetID)
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("read back: %d bytes, %v", len(got), err)
			}
		})
	}
}

// A key that becomes usable again takes effect for the next asset, and a
// revocation seen in live traffic flushes nothing it should not.
func TestKeyStatusChangesTakeEffect(t *testing.T) {
	s := newStack(t)
	key := s.enroll("acme", func(c *tenant.Config) { c.Fallback = false })
	data := pattern(1000, 1)
	if e := s.mustEncrypt("acme", "a1", data); e.Mode != events.ModeCustomer {
		t.Fatalf("mode %s", e.Mode)
	}
	s.setStatus("acme", key, events.KeyStatusUnavailable)
	if out := s.put("acme", "a2", data); out.Rejected == nil || out.Rejected.Reason != events.ReasonCustomerKeyUnavailable {
		t.Fatalf("while unavailable: %+v", out)
	}
	s.setStatus("acme", key, events.KeyStatusAvailable)
	if e := s.mustEncrypt("acme", "a3", data); e.Mode != events.ModeCustomer {
		t.Fatalf("after recovery: mode %s", e.Mode)
	}
	// A rejected asset may be sent again (a new event) once the key is back.
	if e := s.mustEncrypt("acme", "a2", data); e.Mode != events.ModeCustomer {
		t.Fatalf("resend after recovery: mode %s", e.Mode)
	}
	// And sending an encrypted asset again changes nothing: same outcome.
	again := s.mustEncrypt("acme", "a2", pattern(10, 9))
	if again.Size != int64(len(data)) {
		t.Fatalf("second put of an encrypted asset re-encrypted it: size %d", again.Size)
	}
}
