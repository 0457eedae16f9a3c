package reencryptor_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/benchkit"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// The re-encryption benchmarks measure the re-encryptor's own overhead on
// the in-process stack of the tests (embedded NATS, the encryptor, the
// re-encryptor, localkms keys; no KMS endpoint, so no rate limit applies):
// each iteration stores the assets of a job (not timed), triggers the job
// and times it from the trigger until its record is completed and
// finalized. The raw baselines are measured in the same run on the same
// server. docs/benchmarks.md ("Re-encryption") has the figures; `keyward
// bench reencrypt` and cmd/keyward/cli's BenchmarkReencrypt* measure the
// same through the AWS KMS emulator.

// benchSizes are the asset sizes and how many assets a job moves.
var benchSizes = []struct {
	name string
	size int
	n    int
}{
	{"1KiB", 1 << 10, 500},
	{"1MiB", 1 << 20, 16},
}

// benchStack is a test stack with the re-encryptor's production batch size
// (the tests use 16).
func benchStack(b *testing.B) *stack {
	s := newStack(b, func(o *reencryptor.Options) {
		o.BatchSize, o.RescanInterval, o.ProgressInterval = 0, 0, 0
	})
	s.startReencryptor()
	return s
}

// waitBench polls tenantID's job for purpose every 5 ms until a job other
// than notID is completed and finalized; it returns the job and when it was
// seen so.
func (s *stack) waitBench(tenantID string, purpose events.ReencryptPurpose, notID string) (*reencryptor.Job, time.Time) {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		j, err := s.jobs.Get(context.Background(), tenantID, purpose)
		if err != nil {
			s.t.Fatal(err)
		}
		if j != nil && j.ID != notID && completedAndFinal(j) {
			return j, time.Now()
		}
		if j != nil && j.ID != notID && j.State == events.JobStopped {
			s.t.Fatalf("the %s job of %s stopped: %s %s", purpose, tenantID, j.Reason, j.Detail)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatalf("the %s job of %s did not complete", purpose, tenantID)
	return nil, time.Time{}
}

// reportJob reports a job's rates over elapsed (trigger → completed and
// finalized) and over its moving time (its start → its last
// AssetReencrypted stored: without the pass that confirms nothing is left
// and the follow-up).
func (s *stack) reportJob(b *testing.B, j *reencryptor.Job, elapsed time.Duration, n int) {
	b.Helper()
	if j.Done != int64(n) || j.Failed != 0 {
		b.Fatalf("job %s moved %d (%d failed), want %d", j.ID, j.Done, j.Failed, n)
	}
	st, err := s.env.JS.Stream(context.Background(), events.StreamAssets)
	if err != nil {
		b.Fatal(err)
	}
	last, err := st.GetLastMsgForSubject(context.Background(), events.SubjectAssetReencrypted(j.TenantID))
	if err != nil {
		b.Fatal(err)
	}
	moving := last.Time.Sub(j.StartedAt)
	b.ReportMetric(float64(j.Done)/elapsed.Seconds(), "assets/s")
	b.ReportMetric(float64(j.Bytes)/(1<<20)/elapsed.Seconds(), "MiB/s")
	b.ReportMetric(float64(j.Done)/moving.Seconds(), "moving_assets/s")
	b.ReportMetric(float64(j.Bytes)/(1<<20)/moving.Seconds(), "moving_MiB/s")
	b.ReportMetric(j.CompletedAt.Sub(j.StartedAt).Seconds()*1000, "job_ms")
}

// waitMode waits until the re-encryptor's ledger has n assets of tenantID
// in mode, so the timed job measures moving them, not projecting them.
func (s *stack) waitMode(tenantID string, mode events.Mode, n int) {
	s.eventually("the re-encryptor's ledger to have the assets", func() bool {
		c, err := s.reLedger.CountByMode(context.Background(), tenantID)
		return err == nil && c[mode] == n
	})
}

// BenchmarkReencrypt: per asset size, a heal job (N assets stored under the
// fallback key while the customer key was announced unavailable, then the
// key announced available: re-encrypted under a fresh seed and verified)
// and a rotation job (the same assets rewrapped to a new key, payload
// copied), with the raw floors of the same bytes: Object Store get + put of
// each asset (4 workers, like the job), and AES-256-GCM open + seal of each
// asset in Cobblestone chunks on one core. assets/s and MiB/s are over the
// time from the trigger to the job record completed and finalized; job_ms
// is the record's own StartedAt → CompletedAt.
func BenchmarkReencrypt(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run("heal/size="+sz.name, func(b *testing.B) {
			s := benchStack(b)
			for i := 0; b.Loop(); i++ {
				tenantID := "heal" + strconv.Itoa(i)
				key := s.enroll(tenantID)
				s.setStatus(tenantID, key, events.KeyStatusUnavailable)
				s.putMany(tenantID, "a", sz.n, func(int) []byte { return pattern(sz.size, 1) })
				s.waitMode(tenantID, events.ModeFallback, sz.n)
				start := time.Now()
				s.setStatus(tenantID, key, events.KeyStatusAvailable)
				j, end := s.waitBench(tenantID, events.PurposeHeal, "")
				s.reportJob(b, j, end.Sub(start), sz.n)
			}
		})
		b.Run("rotation/size="+sz.name, func(b *testing.B) {
			s := benchStack(b)
			for i := 0; b.Loop(); i++ {
				tenantID := "rot" + strconv.Itoa(i)
				s.enroll(tenantID)
				s.putMany(tenantID, "a", sz.n, func(int) []byte { return pattern(sz.size, 1) })
				s.waitMode(tenantID, events.ModeCustomer, sz.n)
				newKey := s.localKey(tenantID + "-new.key")
				start := time.Now()
				s.rotate(tenantID, newKey.String())
				j, end := s.waitBench(tenantID, events.PurposeRotation, "")
				s.reportJob(b, j, end.Sub(start), sz.n)
			}
		})
		b.Run("raw-objectstore-get-put/size="+sz.name, func(b *testing.B) {
			s := newStack(b)
			for b.Loop() {
				rate, err := benchkit.RawObjectStoreMove(context.Background(), s.env.JS, sz.n, sz.size, reencryptor.DefaultConcurrency)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(rate, "assets/s")
				b.ReportMetric(rate*float64(sz.size)/(1<<20), "MiB/s")
			}
		})
		b.Run("raw-aes-gcm-open-seal/size="+sz.name, func(b *testing.B) {
			for b.Loop() {
				rate := benchkit.RawAESGCMMove(sz.size, 200*time.Millisecond)
				b.ReportMetric(rate, "assets/s")
				b.ReportMetric(rate*float64(sz.size)/(1<<20), "MiB/s")
			}
		})
	}
}
