package reencryptor_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// A heal paused by a new outage resumes when the key is back — the same job
// — and also heals the fallback copies stored while it was paused.
func TestPausedHealResumesAndPicksUpNewCopies(t *testing.T) {
	var batches atomic.Int32
	gate := make(chan struct{})
	s := newStack(t, func(o *reencryptor.Options) {
		o.BatchSize, o.Concurrency = 8, 1
		o.Failpoint = func(p string) {
			if p == reencryptor.FailpointRecorded && batches.Add(1) == 2 {
				<-gate
			}
		}
	})
	key := s.enroll("pz")
	s.startReencryptor()
	data := func(i int) []byte { return pattern(150+i, i) }
	s.setStatus("pz", key, events.KeyStatusUnavailable)
	s.putMany("pz", "a", 40, data)
	s.setStatus("pz", key, events.KeyStatusAvailable)
	s.eventually("two batches", func() bool { return batches.Load() >= 2 })
	s.setStatus("pz", key, events.KeyStatusUnavailable)
	close(gate)
	paused := s.waitJob("pz", events.PurposeHeal, 20*time.Second, func(j *reencryptor.Job) bool {
		return j.State == events.JobPaused && j.Reason == reencryptor.ReasonKeyUnavailable
	})
	if paused.Done != 16 {
		t.Fatalf("paused after %d moves, want 16", paused.Done)
	}
	more := s.putMany("pz", "b", 6, data)
	for id, e := range more {
		if e.Mode != events.ModeFallback {
			t.Fatalf("%s stored as %s while the key was away", id, e.Mode)
		}
	}
	s.setStatus("pz", key, events.KeyStatusAvailable)
	job := s.waitJob("pz", events.PurposeHeal, 30*time.Second, completedAndFinal)
	if job.ID != paused.ID || job.Done != 46 {
		t.Fatalf("job %s done %d, want the paused job %s with 46", job.ID, job.Done, paused.ID)
	}
	var resumed bool
	for _, m := range s.streamMsgs(events.StreamReencrypt, events.SubjectReencryptProgress("pz")) {
		p, err := events.DecodeReencryptionProgress(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		resumed = resumed || (p.State == events.JobPaused && p.Reason == reencryptor.ReasonKeyUnavailable)
	}
	if !resumed {
		t.Fatal("no progress event reported the pause")
	}
	checkHealed(t, s, "pz", key.String(), 46, data, nil)
	for i := range 6 {
		id := assetID("b", i)
		if got, err := s.get("pz", id); err != nil || !bytes.Equal(got, data(i)) {
			t.Fatalf("%s: %d bytes, %v", id, len(got), err)
		}
	}
}

// A format-1 envelope cannot be rewrapped (its context binds the header):
// a rotation re-encrypts it under a fresh seed from the new key instead,
// and it reads back.
func TestRotationReencryptsFormat1(t *testing.T) {
	s := newStack(t)
	oldKey := s.enroll("v1")
	s.startReencryptor()
	data := pattern(40000, 7)
	s.storeCustomer("v1", "old-format", oldKey, data, envelope.Version1)
	s.eventually("the re-encryptor's ledger to hold the asset", func() bool {
		_, err := s.reLedger.Get(context.Background(), "v1", "old-format")
		return err == nil
	})
	if p := s.prefix("v1", "old-format"); p.Header.Version != envelope.Version1 {
		t.Fatalf("stored version %d", p.Header.Version)
	}
	before := s.body("v1", "old-format")
	newKey := s.localKey("v1-new.key")
	s.rotate("v1", newKey.String())
	job := s.waitJob("v1", events.PurposeRotation, 30*time.Second, completedAndFinal)
	if job.Done != 1 || job.Failed != 0 {
		t.Fatalf("job done %d failed %d", job.Done, job.Failed)
	}
	p := s.prefix("v1", "old-format")
	if p.Header.KeyURI != newKey.String() || p.Header.Version != envelope.CurrentVersion {
		t.Fatalf("after rotation: version %d under %s", p.Header.Version, p.Header.KeyURI)
	}
	if s.body("v1", "old-format") == before {
		t.Fatal("the payload of a format-1 asset was kept: it must be re-encrypted")
	}
	if got, err := s.get("v1", "old-format"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reads %d bytes, %v", len(got), err)
	}
}

// Assets that cannot be moved — the ciphertext is missing, or the stored
// object is not the one the ledger records — fail alone: the others are
// healed, the job ends after a few passes and names them, and the ledger
// still says where they are.
func TestFailedAssetsAreReported(t *testing.T) {
	s := newStack(t)
	key := s.enroll("bad")
	s.startReencryptor()
	data := func(i int) []byte { return pattern(500, i) }
	s.putMany("bad", "c", 1, data) // under the customer key: another header
	s.setStatus("bad", key, events.KeyStatusUnavailable)
	s.putMany("bad", "a", 10, data)
	ctx := context.Background()
	copyObject := func(from, to string) {
		r, err := s.vault.Get(ctx, events.VaultObjectName("bad", from))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := s.vault.Put(ctx, events.VaultObjectName("bad", to), r, jetstream.ObjectMeta{}); err != nil {
			t.Fatal(err)
		}
	}
	missing, replaced, foreign := assetID("a", 2), assetID("a", 5), assetID("a", 6)
	if err := s.vault.Delete(ctx, events.VaultObjectName("bad", missing)); err != nil {
		t.Fatal(err)
	}
	copyObject(assetID("c", 0), replaced) // another header than the ledger's
	copyObject(assetID("a", 7), foreign)  // the same header (same seed), another asset's payload
	s.setStatus("bad", key, events.KeyStatusAvailable)
	job := s.waitJob("bad", events.PurposeHeal, 30*time.Second, completedAndFinal)
	if job.Done != 7 || job.Failed != 3 {
		t.Fatalf("job done %d failed %d, want 7 and 3", job.Done, job.Failed)
	}
	listed := map[string]string{}
	for _, f := range job.FailedAssets {
		listed[f.AssetID] = f.Error
	}
	if !strings.Contains(listed[missing], "missing") || !strings.Contains(listed[replaced], "does not match the ledger") ||
		!strings.Contains(listed[foreign], "commitment") || len(listed) != 3 {
		t.Fatalf("failed assets: %+v", job.FailedAssets)
	}
	for _, id := range []string{missing, replaced, foreign} {
		if r, err := s.reLedger.Get(ctx, "bad", id); err != nil || r.Mode != events.ModeFallback {
			t.Fatalf("%s in the ledger: %+v, %v", id, r, err)
		}
	}
	c, err := events.DecodeReencryptionCompleted(s.streamMsgs(events.StreamReencrypt, events.SubjectReencryptCompleted("bad"))[0].Data)
	if err != nil || c.Failed != 3 || c.Done != 7 {
		t.Fatalf("ReencryptionCompleted %+v, %v", c, err)
	}
}

// A rotation stopped by a revoked retiring key stays stopped (no new job
// every rescan) until the key is back; then a new job finishes it.
func TestStoppedRotationWaitsForTheKey(t *testing.T) {
	s := newStack(t)
	oldKey := s.enroll("rk")
	s.startReencryptor()
	s.putMany("rk", "a", 5, func(i int) []byte { return pattern(100, i) })
	s.setStatus("rk", oldKey, events.KeyStatusRevoked)
	s.rotate("rk", s.localKey("rk-new.key").String())
	stopped := s.waitJob("rk", events.PurposeRotation, 20*time.Second, func(j *reencryptor.Job) bool {
		return j.State == events.JobStopped && j.Reason == reencryptor.ReasonKeyRevoked
	})
	time.Sleep(2 * time.Second) // four rescans
	if j, _ := s.jobs.Get(context.Background(), "rk", events.PurposeRotation); j.ID != stopped.ID || j.State != events.JobStopped {
		t.Fatalf("after rescans: %+v", j)
	}
	s.setStatus("rk", oldKey, events.KeyStatusAvailable)
	done := s.waitJob("rk", events.PurposeRotation, 30*time.Second, completedAndFinal)
	if done.ID == stopped.ID || done.Done != 5 {
		t.Fatalf("rotation after the key came back: %s done %d", done.ID, done.Done)
	}
}
