package reencryptor_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// An outage with fallback on leaves N assets under the fallback key; once
// the key is back, the heal job re-encrypts every one under the customer
// key: each decrypts to its original bytes, no header and no ledger entry
// (the re-encryptor's and the encryptor's) names the fallback key, every
// asset has exactly one AssetReencrypted, and assets that were never
// covered are not touched. Assets stored under fallback while the job is
// paused (the key away again) are healed when it resumes.
func TestHealAfterOutage(t *testing.T) {
	s := newStack(t)
	key := s.enroll("acme")
	s.enroll("bystander")
	// Not covered: an asset created before enrollment stays on the platform key.
	s.apply(&tenant.Config{TenantID: "late", Keys: []tenant.Key{{URI: s.localKey("late.key").String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().Add(time.Hour).UTC()}},
		Services: []string{"*"}, LicensedUsers: []string{"*"}, Fallback: true})
	s.startReencryptor()

	data := func(i int) []byte {
		if i == 3 {
			return pattern(1<<20+12345, i) // over 1 MiB: healed through a temporary object
		}
		return pattern(100+i*37, i)
	}
	const n = 24
	s.setStatus("acme", key, events.KeyStatusUnavailable)
	before := s.putMany("acme", "a", n, data)
	for id, e := range before {
		if e.Mode != events.ModeFallback || e.KeyURI != s.fallback.String() {
			t.Fatalf("%s stored as %s under %s during the outage", id, e.Mode, e.KeyURI)
		}
	}
	platformBefore := s.putMany("late", "p", 3, data)
	bystander := s.putMany("bystander", "b", 3, data)

	s.setStatus("acme", key, events.KeyStatusAvailable)
	job := s.waitJob("acme", events.PurposeHeal, 60*time.Second, completedAndFinal)
	if job.Done != n || job.Failed != 0 || job.ToKeyURI != key.String() {
		t.Fatalf("job = done %d failed %d to %s, want %d done under %s", job.Done, job.Failed, job.ToKeyURI, n, key)
	}
	checkHealed(t, s, "acme", key.String(), n, data, before)

	// Never touched: not covered, or another tenant.
	for id, e := range platformBefore {
		if p := s.prefix("late", id); p.Header.KeyURI != e.KeyURI || e.Mode != events.ModePlatform {
			t.Errorf("platform asset %s moved to %s", id, p.Header.KeyURI)
		}
	}
	for id, e := range bystander {
		if p := s.prefix("bystander", id); hex.EncodeToString(sum(p.RawHeader)) != e.HeaderSHA256 {
			t.Errorf("bystander asset %s was rewritten", id)
		}
	}
	if len(s.reencrypted("late"))+len(s.reencrypted("bystander")) != 0 {
		t.Error("assets of other tenants or modes were re-encrypted")
	}
	completed := s.streamMsgs(events.StreamReencrypt, events.SubjectReencryptCompleted("acme"))
	if len(completed) != 1 {
		t.Fatalf("%d ReencryptionCompleted events, want 1", len(completed))
	}
	if c, err := events.DecodeReencryptionCompleted(completed[0].Data); err != nil || c.Done != n || c.Purpose != events.PurposeHeal {
		t.Fatalf("ReencryptionCompleted = %+v, %v", c, err)
	}
	progress := s.streamMsgs(events.StreamReencrypt, events.SubjectReencryptProgress("acme"))
	if len(progress) == 0 {
		t.Fatal("no ReencryptionProgress events")
	}
	if _, err := s.vault.Info(context.Background(), "_reencrypt/acme/"+assetID("a", 3)); err == nil {
		t.Error("the temporary copy of the large asset was left behind")
	}

	// The key goes away again: new assets fall back; when it is back a new
	// heal job moves them too.
	s.setStatus("acme", key, events.KeyStatusUnavailable)
	more := s.putMany("acme", "c", 5, data)
	for id, e := range more {
		if e.Mode != events.ModeFallback {
			t.Fatalf("%s: mode %s", id, e.Mode)
		}
	}
	s.setStatus("acme", key, events.KeyStatusAvailable)
	job2 := s.waitJob("acme", events.PurposeHeal, 60*time.Second, func(j *reencryptor.Job) bool {
		return j.ID != job.ID && completedAndFinal(j)
	})
	if job2.Done != 5 {
		t.Fatalf("second heal moved %d, want 5", job2.Done)
	}
	checkHealed(t, s, "acme", key.String(), n+5, data, before)
}

// checkHealed asserts that every asset of tenantID is under the customer
// key in both ledgers and in its header, reads back intact, and was moved
// exactly once.
func checkHealed(t *testing.T, s *stack, tenantID, key string, n int, data func(int) []byte, before map[string]*events.AssetEncrypted) {
	t.Helper()
	ctx := context.Background()
	s.eventually("the ledgers to record every move", func() bool {
		for _, l := range []*ledger.Store{s.reLedger, s.encLedger} {
			c, err := l.CountByMode(ctx, tenantID)
			if err != nil || c[events.ModeFallback] != 0 || c[events.ModeCustomer] != n {
				return false
			}
		}
		return true
	})
	for _, l := range []*ledger.Store{s.reLedger, s.encLedger} {
		if err := l.ByKey(ctx, tenantID, s.fallback.String(), ledger.ScanOptions{}, func(r ledger.Record) error {
			t.Errorf("ledger %s still has %s under the fallback key", l.Path(), r.AssetID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	moves := map[string]int{}
	for _, e := range s.reencrypted(tenantID) {
		moves[e.AssetID]++
		if e.FromMode != events.ModeFallback || e.ToMode != events.ModeCustomer || e.KeyURI != key || e.Purpose != events.PurposeHeal {
			t.Errorf("AssetReencrypted %s: %s → %s under %s (%s)", e.AssetID, e.FromMode, e.ToMode, e.KeyURI, e.Purpose)
		}
	}
	for _, prefix := range []string{"a", "c"} {
		for i := range n {
			id := assetID(prefix, i)
			if _, err := s.reLedger.Get(ctx, tenantID, id); err != nil {
				continue // not an asset of this run
			}
			if moves[id] != 1 {
				t.Errorf("%s moved %d times", id, moves[id])
			}
			p := s.prefix(tenantID, id)
			if p.Header.KeyURI != key {
				t.Errorf("%s header names %s", id, p.Header.KeyURI)
			}
			if e, ok := before[id]; ok && bytes.Equal(p.Header.WrappedSeed, e.WrappedSeed) {
				t.Errorf("%s kept its fallback-wrapped seed", id)
			}
			got, err := s.get(tenantID, id)
			if err != nil || !bytes.Equal(got, data(i)) {
				t.Errorf("%s reads back %d bytes, %v; want its original %d bytes", id, len(got), err, len(data(i)))
			}
		}
	}
}

func sum(b []byte) []byte {
	h := sha256Sum(b)
	return h[:]
}
