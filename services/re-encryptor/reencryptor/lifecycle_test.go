package reencryptor_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/vault"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// rotate makes newKey the tenant's primary and its old primary retiring, as
// `keyward tenant key rotate` does.
func (s *stack) rotate(tenantID string, newKey string) {
	s.t.Helper()
	cfg, err := s.tenants.Get(context.Background(), tenantID)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := range cfg.Keys {
		if cfg.Keys[i].Role == tenant.RolePrimary {
			cfg.Keys[i].Role = tenant.RoleRetiring
		}
	}
	cfg.Keys = append(cfg.Keys, tenant.Key{URI: newKey, Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC()})
	s.apply(cfg)
}

// Rotation rewraps every asset from the old key to the new one without
// re-encrypting content (the payload bytes are unchanged), calls the KMS
// once per seed rather than per asset, retires the old key from the
// tenant's configuration and announces it; with the old key disabled
// afterwards everything still reads.
func TestRotationRewrapsEverything(t *testing.T) {
	s := newStack(t)
	oldKey := s.enroll("rot")
	s.startReencryptor()
	const n = 30
	data := func(i int) []byte { return pattern(500+i*101, i) }
	before := s.putMany("rot", "r", n, data)
	bodies := map[string][32]byte{}
	for id, e := range before {
		if e.Mode != events.ModeCustomer || e.KeyURI != oldKey.String() {
			t.Fatalf("%s stored as %s under %s", id, e.Mode, e.KeyURI)
		}
		bodies[id] = s.body("rot", id)
	}
	newKey := s.localKey("rot-new.key")
	cfg0, err := s.tenants.Get(context.Background(), "rot")
	if err != nil {
		t.Fatal(err)
	}
	coveredSince := cfg0.CoveredSince()
	s.rotate("rot", newKey.String())

	job := s.waitJob("rot", events.PurposeRotation, 60*time.Second, completedAndFinal)
	if job.Done != n || job.Failed != 0 || job.ToKeyURI != newKey.String() || !slices.Equal(job.FromKeyURIs(), []string{oldKey.String()}) {
		t.Fatalf("job: done %d failed %d %v → %s", job.Done, job.Failed, job.FromKeyURIs(), job.ToKeyURI)
	}
	moves := map[string]int{}
	for _, e := range s.reencrypted("rot") {
		moves[e.AssetID]++
		if e.Purpose != events.PurposeRotation || e.FromKeyURI != oldKey.String() || e.KeyURI != newKey.String() || e.ToMode != events.ModeCustomer {
			t.Errorf("AssetReencrypted %+v", e)
		}
	}
	for id := range before {
		if moves[id] != 1 {
			t.Errorf("%s moved %d times", id, moves[id])
		}
		if p := s.prefix("rot", id); p.Header.KeyURI != newKey.String() {
			t.Errorf("%s header names %s", id, p.Header.KeyURI)
		}
		if s.body("rot", id) != bodies[id] {
			t.Errorf("%s: payload bytes changed: rotation must only rewrap", id)
		}
	}
	// The old key left the configuration and RotationCompleted says so.
	cfg, err := s.tenants.Get(context.Background(), "rot")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Keys) != 1 || cfg.Keys[0].URI != newKey.String() || cfg.Keys[0].Role != tenant.RolePrimary {
		t.Fatalf("keys after rotation: %+v", cfg.Keys)
	}
	if !cfg.CoveredSince().Equal(coveredSince) {
		t.Fatalf("coverage start moved from %v to %v with the retired key", coveredSince, cfg.CoveredSince())
	}
	rc := s.streamMsgs(events.StreamLifecycle, events.SubjectRotationCompleted("rot"))
	if len(rc) != 1 {
		t.Fatalf("%d RotationCompleted, want 1", len(rc))
	}
	if e, err := events.DecodeRotationCompleted(rc[0].Data); err != nil || !slices.Equal(e.RetiredKeyURIs, []string{oldKey.String()}) || e.Assets != n {
		t.Fatalf("RotationCompleted %+v, %v", e, err)
	}
	// The old key is disabled: everything still reads.
	if err := localkms.SetDisabled(oldKey.KeyID, true); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := assetID("r", i)
		got, err := s.get("rot", id)
		if err != nil || !bytes.Equal(got, data(i)) {
			t.Fatalf("%s after the old key was disabled: %d bytes, %v", id, len(got), err)
		}
	}
	// New assets go under the new key.
	if e := s.putMany("rot", "after", 1, data)[assetID("after", 0)]; e.KeyURI != newKey.String() {
		t.Fatalf("new asset under %s", e.KeyURI)
	}
}

// Deprovisioning at a date in the past starts at once: every customer and
// fallback asset is rewrapped to the platform key, the tenant's keys leave
// its configuration, DeprovisionCompleted names them, and everything reads
// with the customer key disabled. Platform assets are not touched.
func TestDeprovisionNow(t *testing.T) {
	s := newStack(t)
	key := s.enroll("dep")
	s.startReencryptor()
	data := func(i int) []byte { return pattern(700+i, i) }
	customer := s.putMany("dep", "c", 12, data)
	s.setStatus("dep", key, events.KeyStatusUnavailable)
	fallback := s.putMany("dep", "f", 6, data)
	for _, e := range fallback {
		if e.Mode != events.ModeFallback {
			t.Fatalf("mode %s", e.Mode)
		}
	}
	local := s.putManyOrigin("dep", "l", 2, data, events.OriginLocalUpload)
	// Scheduled in the past while the key is away: the job waits (paused)
	// and starts as soon as the key is back. No heal job runs meanwhile.
	s.scheduleDeprovision("dep", time.Now().Add(-time.Minute))
	s.waitJob("dep", events.PurposeDeprovision, 20*time.Second, func(j *reencryptor.Job) bool {
		return j.State == events.JobPaused && j.Reason == reencryptor.ReasonKeyUnavailable
	})
	s.setStatus("dep", key, events.KeyStatusAvailable)
	job := s.waitJob("dep", events.PurposeDeprovision, 60*time.Second, completedAndFinal)
	if job.Done != 18 {
		t.Fatalf("deprovisioning moved %d, want 18", job.Done)
	}
	if h, _ := s.jobs.Get(context.Background(), "dep", events.PurposeHeal); h != nil {
		t.Fatalf("a heal job ran for a tenant being deprovisioned: %+v", h)
	}
	cfg, err := s.tenants.Get(context.Background(), "dep")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Keys) != 0 || cfg.Deprovision != nil || cfg.DeprovisionedAt == nil {
		t.Fatalf("configuration after deprovisioning: keys %v, schedule %v, deprovisioned at %v", cfg.Keys, cfg.Deprovision, cfg.DeprovisionedAt)
	}
	dc := s.streamMsgs(events.StreamLifecycle, events.SubjectDeprovisionCompleted("dep"))
	if len(dc) != 1 {
		t.Fatalf("%d DeprovisionCompleted, want 1", len(dc))
	}
	if e, err := events.DecodeDeprovisionCompleted(dc[0].Data); err != nil || !slices.Equal(e.KeyURIs, []string{key.String()}) || e.Assets != 18 {
		t.Fatalf("DeprovisionCompleted %+v, %v", e, err)
	}
	ctx := context.Background()
	s.eventually("the ledger to show every asset on the platform key", func() bool {
		c, err := s.reLedger.CountByMode(ctx, "dep")
		return err == nil && c[events.ModePlatform] == 20 && c[events.ModeCustomer] == 0 && c[events.ModeFallback] == 0
	})
	// An encryptor that decided an asset under the old configuration and
	// stored it after the job's last pass: a follow-up job moves it.
	s.storeStraggler("dep", "straggler", key, data(0))
	s.eventually("the re-encryptor's ledger to hold the straggler", func() bool {
		r, err := s.reLedger.Get(ctx, "dep", "straggler")
		return err == nil && r.Mode == events.ModeCustomer
	})
	s.waitJob("dep", events.PurposeDeprovision, 30*time.Second, func(j *reencryptor.Job) bool {
		return j.ID != job.ID && completedAndFinal(j) && j.Done == 1
	})
	if got := len(s.streamMsgs(events.StreamLifecycle, events.SubjectDeprovisionCompleted("dep"))); got != 1 {
		t.Fatalf("%d DeprovisionCompleted after the follow-up, want 1", got)
	}
	if p := s.prefix("dep", "straggler"); p.Header.KeyURI != s.platform.String() {
		t.Fatalf("straggler still under %s", p.Header.KeyURI)
	}
	if err := localkms.SetDisabled(key.KeyID, true); err != nil {
		t.Fatal(err)
	}
	for id, e := range customer {
		s.checkPlatform(id, e, data)
	}
	for id, e := range fallback {
		s.checkPlatform(id, e, data)
	}
	for id, e := range local {
		if r, err := s.reLedger.Get(ctx, "dep", id); err != nil || r.ReencryptedAt.IsZero() == false || r.KeyURI != e.KeyURI {
			t.Errorf("local upload %s was touched: %+v, %v", id, r, err)
		}
	}
	// New assets go under the platform key.
	if e := s.putMany("dep", "after", 1, data)[assetID("after", 0)]; e.Mode != events.ModePlatform {
		t.Fatalf("new asset after deprovisioning: %s", e.Mode)
	}
}

func (s *stack) checkPlatform(id string, e *events.AssetEncrypted, data func(int) []byte) {
	s.t.Helper()
	if p := s.prefix("dep", id); p.Header.KeyURI != s.platform.String() {
		s.t.Errorf("%s header names %s", id, p.Header.KeyURI)
	}
	got, err := s.get("dep", id)
	var i int
	for i = 0; assetID(id[:1], i) != id; i++ {
	}
	if err != nil || !bytes.Equal(got, data(i)) {
		s.t.Errorf("%s reads %d bytes, %v", id, len(got), err)
	}
}

// A deprovisioning scheduled in the future waits for its date; one
// cancelled before its date never runs.
func TestDeprovisionScheduleAndCancel(t *testing.T) {
	s := newStack(t)
	s.enroll("later")
	s.enroll("cancelled")
	s.startReencryptor()
	data := func(i int) []byte { return pattern(300, i) }
	s.putMany("later", "a", 4, data)
	s.putMany("cancelled", "a", 4, data)
	at := time.Now().Add(2 * time.Second)
	s.scheduleDeprovision("later", at)
	s.scheduleDeprovision("cancelled", at)
	time.Sleep(time.Second) // two rescans before the date
	for _, id := range []string{"later", "cancelled"} {
		if j, _ := s.jobs.Get(context.Background(), id, events.PurposeDeprovision); j != nil {
			t.Fatalf("%s: deprovisioning started before its date: %+v", id, j)
		}
	}
	cfg, err := s.tenants.Get(context.Background(), "cancelled")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Deprovision = nil
	s.apply(cfg)

	job := s.waitJob("later", events.PurposeDeprovision, 30*time.Second, completedAndFinal)
	if job.StartedAt.Before(at) {
		t.Fatalf("job started at %v, before the date %v", job.StartedAt, at)
	}
	if job.Done != 4 {
		t.Fatalf("moved %d, want 4", job.Done)
	}
	time.Sleep(time.Second)
	if j, _ := s.jobs.Get(context.Background(), "cancelled", events.PurposeDeprovision); j != nil {
		t.Fatalf("a cancelled deprovisioning ran: %+v", j)
	}
	c, err := s.reLedger.CountByMode(context.Background(), "cancelled")
	if err != nil || c[events.ModeCustomer] != 4 {
		t.Fatalf("cancelled tenant's assets: %v, %v", c, err)
	}
}

// A key revoked in the middle of a heal stops the job, says why, and leaves
// every asset exactly where the ledger says: the ones moved under the
// customer key, the rest under the fallback key, none lost.
func TestRevokedMidJobStops(t *testing.T) {
	var batches atomic.Int32
	gate := make(chan struct{})
	s := newStack(t, func(o *reencryptor.Options) {
		o.BatchSize, o.Concurrency = 8, 1
		o.Failpoint = func(p string) {
			if p == reencryptor.FailpointRecorded && batches.Add(1) == 3 {
				<-gate // hold the job after its third batch
			}
		}
	})
	key := s.enroll("rev")
	s.startReencryptor()
	const n = 80
	s.setStatus("rev", key, events.KeyStatusUnavailable)
	s.putMany("rev", "a", n, func(i int) []byte { return pattern(200, i) })
	s.setStatus("rev", key, events.KeyStatusAvailable)
	s.eventually("three batches", func() bool { return batches.Load() >= 3 })
	// The customer revokes the key; the monitor reports it.
	if err := localkms.SetDisabled(key.KeyID, true); err != nil {
		t.Fatal(err)
	}
	s.setStatus("rev", key, events.KeyStatusRevoked)
	close(gate)

	job := s.waitJob("rev", events.PurposeHeal, 30*time.Second, func(j *reencryptor.Job) bool { return j.State == events.JobStopped })
	if job.Reason != reencryptor.ReasonKeyRevoked || job.Done != 24 {
		t.Fatalf("stopped job: reason %q, done %d (want %s, 24)", job.Reason, job.Done, reencryptor.ReasonKeyRevoked)
	}
	ctx := context.Background()
	s.eventually("the ledger to settle", func() bool {
		c, err := s.reLedger.CountByMode(ctx, "rev")
		return err == nil && c[events.ModeCustomer] == 24 && c[events.ModeFallback] == n-24
	})
	if got := len(s.reencrypted("rev")); got != 24 {
		t.Fatalf("%d AssetReencrypted, want 24", got)
	}
	// Every asset's stored header agrees with the ledger.
	if err := s.reLedger.ByMode(ctx, "rev", events.ModeFallback, ledger.ScanOptions{}, func(r ledger.Record) error {
		if p := s.prefix("rev", r.AssetID); p.Header.KeyURI != s.fallback.String() {
			t.Errorf("%s: ledger says fallback, header names %s", r.AssetID, p.Header.KeyURI)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var stopped bool
	for _, m := range s.streamMsgs(events.StreamReencrypt, events.SubjectReencryptProgress("rev")) {
		p, err := events.DecodeReencryptionProgress(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		stopped = stopped || (p.State == events.JobStopped && p.Reason == reencryptor.ReasonKeyRevoked && p.Left == n-24)
	}
	if !stopped {
		t.Fatal("no progress event says the job stopped because the key was revoked, with the assets left")
	}
	// No job runs while the key stays revoked.
	time.Sleep(time.Second)
	if j, _ := s.jobs.Get(ctx, "rev", events.PurposeHeal); j.ID != job.ID || j.State != events.JobStopped {
		t.Fatalf("after the stop: %+v", j)
	}
}

// The ledger rebuilt from KW_ASSETS equals the live one.
func TestLedgerRebuildEqualsLive(t *testing.T) {
	s := newStack(t)
	key := s.enroll("reb")
	s.startReencryptor()
	data := func(i int) []byte { return pattern(256, i) }
	s.putMany("reb", "c", 10, data)
	s.setStatus("reb", key, events.KeyStatusUnavailable)
	s.putMany("reb", "f", 10, data)
	s.setStatus("reb", key, events.KeyStatusAvailable)
	s.waitJob("reb", events.PurposeHeal, 30*time.Second, completedAndFinal)
	s.stopReencryptor()

	live := s.records(s.dir + "/reencryptor.db")
	rebuilt := s.rebuild()
	if len(live) != 20 || len(rebuilt) != len(live) {
		t.Fatalf("live ledger %d records, rebuilt %d", len(live), len(rebuilt))
	}
	for id, r := range live {
		if got := rebuilt[id]; got != r {
			t.Errorf("%s:\nlive    %s\nrebuilt %s", id, r, got)
		}
	}
}

// storeStraggler stores an asset under key in mode customer and publishes
// its AssetEncrypted, exactly as an encryptor holding an old configuration
// would.
func (s *stack) storeStraggler(tenantID, assetID string, key kms.KeyURI, data []byte) {
	s.t.Helper()
	s.storeCustomer(tenantID, assetID, key, data, envelope.CurrentVersion)
}

// storeCustomer stores an asset under key in mode customer, in envelope
// format version, and publishes its AssetEncrypted as an encryptor would.
func (s *stack) storeCustomer(tenantID, assetID string, key kms.KeyURI, data []byte, version uint8) {
	s.t.Helper()
	ctx := context.Background()
	ec := kms.NewEncryptionContext(tenantID, kms.PurposeAssetSeed)
	dk, err := s.client.GenerateDataKey(ctx, key, ec)
	if err != nil {
		s.t.Fatal(err)
	}
	defer dk.Destroy()
	hdr := &envelope.Header{Version: version, KeyURI: key.String(), KeyVersion: dk.KeyVersion, WrappedSeed: dk.Ciphertext}
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, hdr, dk.Plaintext, envelope.Identity{TenantID: tenantID, AssetID: assetID, Service: "cloud_recording"})
	if err != nil {
		s.t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		s.t.Fatal(err)
	}
	hs := w.HeaderSHA256()
	name := events.VaultObjectName(tenantID, assetID)
	info, err := s.vault.Put(ctx, name, bytes.NewReader(buf.Bytes()), jetstream.ObjectMeta{Metadata: map[string]string{vault.MetaMode: "customer"}})
	if err != nil {
		s.t.Fatal(err)
	}
	ct, _ := vault.DigestHex(info.Digest)
	e := &events.AssetEncrypted{TenantID: tenantID, AssetID: assetID, Service: "cloud_recording", Mode: events.ModeCustomer,
		Coverage: "covered", KeyURI: key.String(), KeyVersion: dk.KeyVersion, WrappedSeed: dk.Ciphertext,
		Location: events.Location{Bucket: events.BucketVault, Object: name}, Size: int64(len(data)),
		CiphertextSize: int64(info.Size), CiphertextSHA256: ct, HeaderSHA256: hex.EncodeToString(hs[:]),
		SourceEventID: "event-" + assetID, EncryptedAt: time.Now().UTC()}
	if _, err := events.NewPublisher(s.env.JS, "test").Publish(ctx, events.Outgoing{Subject: events.SubjectAssetEncrypted(tenantID),
		MsgID: events.MsgID("encrypted", tenantID, assetID), Type: events.TypeAssetEncrypted, Event: e}); err != nil {
		s.t.Fatal(err)
	}
}
