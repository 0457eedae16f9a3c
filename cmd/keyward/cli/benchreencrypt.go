package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/benchkit"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// The re-encryption scenarios measure the re-encryptor of an in-process
// keyward dev through the AWS KMS emulator (local-kms, reached with the
// real aws-sdk-go-v2): `keyward bench reencrypt` and the
// BenchmarkReencrypt* benchmarks of this package run them.
// docs/benchmarks.md ("Re-encryption") has the figures.
//
//   - Heal: a tenant like DemoTenantAWS (its own key in the emulator,
//     fallback on) has its key announced unavailable in KV KW_KEY_STATUS,
//     as the key-health-monitor would; N assets are stored (under the
//     fallback key); the key is announced available again, and the heal job
//     re-encrypts them under a fresh seed from the customer key. Timed from
//     the "available" record to the job record completed and finalized.
//   - Rotation: the tenant's key is rotated to a new emulator key (the
//     old one retiring, as `keyward tenant key rotate` does); the rotation
//     job rewraps every asset (only the header changes, the payload is
//     copied). Timed from the configuration change to the job record
//     completed and finalized (the retired key removed, RotationCompleted).
//   - Raw baselines on the same server, same bytes: an Object Store get +
//     put of each asset by as many workers as the job moves assets at once
//     (the floor for moving an asset), and AES-256-GCM open + seal of each
//     asset in Cobblestone chunks on one core (the crypto floor).
//   - Live traffic: the decision latency of the local-key tenant "demo"
//     at a fixed rate, once idle and once while a heal job runs.
//
// Each tenant gets a fresh key and serves one scenario, so a job moves only
// that scenario's assets. The key-health-monitor probes once a day here, so
// it cannot contradict the statuses the scenarios write.

// ReencryptOptions tune the re-encryption scenarios. Zero fields take the
// defaults.
type ReencryptOptions struct {
	// Assets per job (2000), at most MaxMiB MiB of them.
	Assets int
	// Size is the bytes of each asset (1024).
	Size int
	// MaxMiB caps a job's plaintext (256): a job moves
	// min(Assets, MaxMiB MiB / Size) assets.
	MaxMiB int
	// LiveRate is the live traffic's assets per second (100), LiveFor how
	// long the idle measurement runs (3 s); the one during a job lasts as
	// long as the job.
	LiveRate float64
	LiveFor  time.Duration
	// Timeout bounds each job (5 min).
	Timeout time.Duration
}

func (o ReencryptOptions) withDefaults() ReencryptOptions {
	if o.Assets <= 0 {
		o.Assets = 2000
	}
	if o.Size <= 0 {
		o.Size = 1024
	}
	if o.MaxMiB <= 0 {
		o.MaxMiB = 256
	}
	if o.LiveRate <= 0 {
		o.LiveRate = 100
	}
	if o.LiveFor <= 0 {
		o.LiveFor = 3 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	return o
}

// N is the number of assets a job of these options moves.
func (o ReencryptOptions) N() int {
	o = o.withDefaults()
	return max(1, min(o.Assets, (o.MaxMiB<<20)/o.Size))
}

// ReencryptDevOptions are the keyward dev options of the scenarios: the
// re-encryptor's KMS client holds to share of each endpoint's default rate
// limit (0 or less: unlimited), and the key-health-monitor probes once a
// day, so the statuses the scenarios write are the only ones.
func ReencryptDevOptions(dir string, share float64) DevOptions {
	if share <= 0 {
		share = -1 // DevOptions: negative is unlimited, 0 the default share
	}
	return DevOptions{DataDir: dir, Port: 0, ReencryptorRateShare: share, NoAuth: benchNoAuth,
		KeyHealth: monitor.Options{HealthyInterval: 24 * time.Hour, UnhealthyInterval: 24 * time.Hour, ConfirmInterval: 24 * time.Hour}}
}

// ReencryptJobResult is one measured job.
type ReencryptJobResult struct {
	Purpose  events.ReencryptPurpose `json:"purpose"`
	TenantID string                  `json:"tenant_id"`
	Size     int                     `json:"size"`
	// Done assets moved, Bytes of plaintext.
	Done  int64 `json:"done"`
	Bytes int64 `json:"bytes"`
	// Elapsed is from the trigger (key status available, configuration
	// rotated) until the job record was seen completed and finalized;
	// Job is the record's StartedAt → CompletedAt; Moving is from StartedAt
	// until the last AssetReencrypted of the job was stored (without the
	// pass that confirms nothing is left, and the follow-up).
	Elapsed time.Duration `json:"elapsed_ns"`
	Job     time.Duration `json:"job_ns"`
	Moving  time.Duration `json:"moving_ns"`
	// KMSCalls the re-encryptor made meanwhile.
	KMSCalls int64 `json:"kms_calls"`
}

// AssetsPerSec is Done over Elapsed.
func (r ReencryptJobResult) AssetsPerSec() float64 { return float64(r.Done) / r.Elapsed.Seconds() }

// MiBPerSec is Bytes over Elapsed, in MiB/s.
func (r ReencryptJobResult) MiBPerSec() float64 {
	return float64(r.Bytes) / (1 << 20) / r.Elapsed.Seconds()
}

// MovingAssetsPerSec is Done over Moving.
func (r ReencryptJobResult) MovingAssetsPerSec() float64 { return float64(r.Done) / r.Moving.Seconds() }

// MovingMiBPerSec is Bytes over Moving, in MiB/s.
func (r ReencryptJobResult) MovingMiBPerSec() float64 {
	return float64(r.Bytes) / (1 << 20) / r.Moving.Seconds()
}

// ReencryptBaseline is a raw floor for moving assets of Size bytes.
type ReencryptBaseline struct {
	Size         int     `json:"size"`
	AssetsPerSec float64 `json:"assets_per_sec"`
}

// MiBPerSec is the baseline's bandwidth.
func (b ReencryptBaseline) MiBPerSec() float64 {
	return b.AssetsPerSec * float64(b.Size) / (1 << 20)
}

// reencryptRun names each scenario's tenant uniquely within a stack.
var reencryptRun struct {
	sync.Mutex
	n int
}

func reencryptTenantID(kind string) string {
	reencryptRun.Lock()
	defer reencryptRun.Unlock()
	reencryptRun.n++
	return "rb-" + kind + "-" + strconv.Itoa(reencryptRun.n)
}

// reencryptTenant creates a tenant like DemoTenantAWS: a fresh key in the
// AWS emulator, every service and user, fallback on; it returns once the
// encryptor has the configuration.
func reencryptTenant(ctx context.Context, d *Dev, id string) (kms.KeyURI, error) {
	key, err := d.AWS.CreateKey(ctx)
	if err != nil {
		return kms.KeyURI{}, err
	}
	store, err := tenant.OpenStore(ctx, d.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		return kms.KeyURI{}, err
	}
	cfg, err := store.Apply(ctx, &tenant.Config{
		TenantID: id, DisplayName: "re-encryption benchmark tenant",
		Keys:     []tenant.Key{{URI: key.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC().Add(-time.Minute)}},
		Services: []string{tenant.All}, LicensedUsers: []string{tenant.All}, Fallback: true,
	})
	if err != nil {
		return kms.KeyURI{}, err
	}
	if !waitFor(ctx, 20*time.Second, func() bool {
		c, ok := d.Encryptor.Tenant(id)
		return ok && c.Revision >= cfg.Revision
	}) {
		return kms.KeyURI{}, fmt.Errorf("the encryptor did not see tenant %s", id)
	}
	return key, nil
}

// setReencryptKeyStatus records a key's status in KV KW_KEY_STATUS as the
// key-health-monitor would, and waits until the encryptor has it.
func setReencryptKeyStatus(ctx context.Context, d *Dev, tenantID string, key kms.KeyURI, st events.KeyStatus) error {
	kv, err := d.JS.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		return err
	}
	if err := keystatus.Put(ctx, kv, keystatus.Record{TenantID: tenantID, KeyURI: key.String(), Status: st, Reason: "keyward bench reencrypt", Since: time.Now().UTC()}); err != nil {
		return err
	}
	if !waitFor(ctx, 20*time.Second, func() bool { return d.Encryptor.KeyStatus(tenantID, key.String()) == st }) {
		return fmt.Errorf("the encryptor did not see %s %s", key, st)
	}
	return nil
}

// storeReencryptAssets stores n assets of size random bytes for tenantID
// through the encryptor (32 at a time, on a connection of their own) and
// checks that each was stored in mode want.
func storeReencryptAssets(ctx context.Context, d *Dev, tenantID string, n, size int, want events.Mode) error {
	nc, err := nats.Connect(d.URL(), nats.Name("keyward-bench-reencrypt"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	p, err := producer.New(ctx, nc, js)
	if err != nil {
		return err
	}
	payload := make([]byte, size)
	rand.Read(payload)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := func() error {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				pd, err := p.Put(pctx, producer.Asset{TenantID: tenantID, AssetID: fmt.Sprintf("a-%06d", i), Service: "cloud_recording", OwnerUserID: "bench"},
					bytes.NewReader(payload), int64(size))
				if err != nil {
					return err
				}
				defer pd.Close()
				out, err := pd.Wait(pctx)
				if err != nil {
					return err
				}
				if out.Encrypted == nil {
					return fmt.Errorf("asset rejected: %s", out.Rejected.Reason)
				}
				if out.Encrypted.Mode != want {
					return fmt.Errorf("asset stored in mode %s, want %s", out.Encrypted.Mode, want)
				}
				return nil
			}()
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("storing %d assets of %s (%d failed): %w", n, tenantID, len(errs), errs[0])
	}
	return nil
}

// waitReencryptJob polls tenantID's job for purpose every 5 ms until a job
// other than notID is completed and finalized (at most timeout; 0: 5 min).
// A job stopped meanwhile is an error.
func waitReencryptJob(ctx context.Context, jobs *reencryptor.Jobs, tenantID string, purpose events.ReencryptPurpose, notID string, timeout time.Duration) (*reencryptor.Job, time.Time, error) {
	if timeout <= 0 {
		timeout = ReencryptOptions{}.withDefaults().Timeout
	}
	deadline := time.Now().Add(timeout)
	var last *reencryptor.Job
	for time.Now().Before(deadline) {
		j, err := jobs.Get(ctx, tenantID, purpose)
		if err != nil {
			return nil, time.Time{}, err
		}
		now := time.Now()
		if j != nil && j.ID != notID {
			if j.State == events.JobCompleted && j.Finalized {
				return j, now, nil
			}
			if j.State == events.JobStopped {
				return nil, now, fmt.Errorf("the %s job of %s stopped: %s %s", purpose, tenantID, j.Reason, j.Detail)
			}
		}
		last = j
		select {
		case <-ctx.Done():
			return nil, now, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil, time.Now(), fmt.Errorf("the %s job of %s did not complete in %v; last record: %+v", purpose, tenantID, timeout, last)
}

func jobID(j *reencryptor.Job) string {
	if j == nil {
		return ""
	}
	return j.ID
}

// ReencryptSetup is a tenant whose assets wait for a heal job: its key is
// announced unavailable and its assets are stored under the fallback key.
type ReencryptSetup struct {
	TenantID string
	Key      kms.KeyURI
	N, Size  int
}

// ReencryptProjectionWait is how long PrepareHeal waits after storing, so
// the re-encryptor's ledger has projected every asset before the key comes
// back and the timed heal does not include that projection.
const ReencryptProjectionWait = 1500 * time.Millisecond

// PrepareHeal creates a tenant on the AWS emulator, announces its key
// unavailable and stores o.N() assets of o.Size bytes (in fallback mode).
func PrepareHeal(ctx context.Context, d *Dev, o ReencryptOptions) (*ReencryptSetup, error) {
	o = o.withDefaults()
	s := &ReencryptSetup{TenantID: reencryptTenantID("heal"), N: o.N(), Size: o.Size}
	var err error
	if s.Key, err = reencryptTenant(ctx, d, s.TenantID); err != nil {
		return nil, err
	}
	if err := setReencryptKeyStatus(ctx, d, s.TenantID, s.Key, events.KeyStatusUnavailable); err != nil {
		return nil, err
	}
	if err := storeReencryptAssets(ctx, d, s.TenantID, s.N, s.Size, events.ModeFallback); err != nil {
		return nil, err
	}
	// Let the re-encryptor's ledger project the stored assets first (it
	// would catch up when the key comes back anyway): the timed heal then
	// measures moving, not projecting.
	sleepCtx(ctx, ReencryptProjectionWait)
	return s, nil
}

// Heal announces the setup's key available and times its heal job (at most
// timeout; 0: 5 min).
func (s *ReencryptSetup) Heal(ctx context.Context, d *Dev, timeout time.Duration) (ReencryptJobResult, error) {
	jobs, err := reencryptor.OpenJobs(ctx, d.JS)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	prev, err := jobs.Get(ctx, s.TenantID, events.PurposeHeal)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	calls := d.ReencryptorKMS.Stats().Calls
	start := time.Now()
	if err := setReencryptKeyStatus(ctx, d, s.TenantID, s.Key, events.KeyStatusAvailable); err != nil {
		return ReencryptJobResult{}, err
	}
	j, end, err := waitReencryptJob(ctx, jobs, s.TenantID, events.PurposeHeal, jobID(prev), timeout)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	return s.result(ctx, d, j, start, end, calls)
}

// Rotate rotates the setup's tenant to a new key in the emulator (the old
// one retiring) and times the rotation job (at most timeout; 0: 5 min).
func (s *ReencryptSetup) Rotate(ctx context.Context, d *Dev, timeout time.Duration) (ReencryptJobResult, error) {
	jobs, err := reencryptor.OpenJobs(ctx, d.JS)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	prev, err := jobs.Get(ctx, s.TenantID, events.PurposeRotation)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	newKey, err := d.AWS.CreateKey(ctx)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	store, err := tenant.OpenStore(ctx, d.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		return ReencryptJobResult{}, err
	}
	cfg, err := store.Get(ctx, s.TenantID)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	for i := range cfg.Keys {
		if cfg.Keys[i].Role == tenant.RolePrimary {
			cfg.Keys[i].Role = tenant.RoleRetiring
		}
	}
	cfg.Keys = append(cfg.Keys, tenant.Key{URI: newKey.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC()})
	calls := d.ReencryptorKMS.Stats().Calls
	start := time.Now()
	if _, err := store.Apply(ctx, cfg); err != nil {
		return ReencryptJobResult{}, err
	}
	j, end, err := waitReencryptJob(ctx, jobs, s.TenantID, events.PurposeRotation, jobID(prev), timeout)
	if err != nil {
		return ReencryptJobResult{}, err
	}
	s.Key = newKey
	return s.result(ctx, d, j, start, end, calls)
}

func (s *ReencryptSetup) result(ctx context.Context, d *Dev, j *reencryptor.Job, start, end time.Time, calls int64) (ReencryptJobResult, error) {
	r := ReencryptJobResult{Purpose: j.Purpose, TenantID: s.TenantID, Size: s.Size, Done: j.Done, Bytes: j.Bytes,
		Elapsed: end.Sub(start), Job: j.CompletedAt.Sub(j.StartedAt), KMSCalls: d.ReencryptorKMS.Stats().Calls - calls}
	if j.Done != int64(s.N) || j.Failed != 0 {
		return r, fmt.Errorf("the %s job of %s moved %d assets (%d failed), want %d", j.Purpose, s.TenantID, j.Done, j.Failed, s.N)
	}
	st, err := d.JS.Stream(ctx, events.StreamAssets)
	if err != nil {
		return r, err
	}
	last, err := st.GetLastMsgForSubject(ctx, events.SubjectAssetReencrypted(s.TenantID))
	if err != nil {
		return r, fmt.Errorf("the last AssetReencrypted of %s: %w", s.TenantID, err)
	}
	r.Moving = last.Time.Sub(j.StartedAt)
	return r, nil
}

// ReencryptBaselines measures both raw floors for size-byte assets on d's
// server (n of them for the Object Store, with the re-encryptor's default
// concurrency).
func ReencryptBaselines(ctx context.Context, d *Dev, n, size int) (store, crypto ReencryptBaseline, err error) {
	rate, err := benchkit.RawObjectStoreMove(ctx, d.JS, n, size, reencryptor.DefaultConcurrency)
	if err != nil {
		return store, crypto, err
	}
	return ReencryptBaseline{Size: size, AssetsPerSec: rate}, ReencryptBaseline{Size: size, AssetsPerSec: benchkit.RawAESGCMMove(size, 300*time.Millisecond)}, nil
}

// ReencryptLiveResult is the live traffic's decision latency while idle
// and during a heal job, with that job's figures.
type ReencryptLiveResult struct {
	Rate   float64            `json:"rate"`
	Idle   FailoverLatency    `json:"idle"`
	During FailoverLatency    `json:"during"`
	Heal   ReencryptJobResult `json:"heal"`
}

// ReencryptLive measures the decision latency of the local-key tenant
// "demo" at o.LiveRate assets/s: for o.LiveFor with no job running, then
// during a heal job of o.N() assets of o.Size bytes (the assets published
// between "available" and the job's completion).
func ReencryptLive(ctx context.Context, d *Dev, o ReencryptOptions) (*ReencryptLiveResult, error) {
	o = o.withDefaults()
	setup, err := PrepareHeal(ctx, d, o)
	if err != nil {
		return nil, err
	}
	t, err := startFailoverTraffic(ctx, d, 1024)
	if err != nil {
		return nil, err
	}
	defer t.close()
	res := &ReencryptLiveResult{Rate: o.LiveRate}
	t.start(ctx, []string{DemoTenant}, o.LiveRate)
	sleepCtx(ctx, time.Second) // warm-up, not counted
	idleFrom := time.Now()
	sleepCtx(ctx, o.LiveFor)
	healFrom := time.Now()
	res.Heal, err = setup.Heal(ctx, d, o.Timeout)
	healTo := time.Now()
	t.halt()
	if err != nil {
		return nil, err
	}
	if err := t.drain(30 * time.Second); err != nil {
		return nil, err
	}
	assets, _ := t.snapshot()
	var idle, during []time.Duration
	for _, a := range assets {
		if a.rejected || a.mode != events.ModeCustomer {
			return nil, fmt.Errorf("live asset %s: rejected %v, mode %s", a.id, a.rejected, a.mode)
		}
		switch {
		case !a.published.Before(idleFrom) && a.published.Before(healFrom):
			idle = append(idle, a.latency)
		case !a.published.Before(healFrom) && a.published.Before(healTo):
			during = append(during, a.latency)
		}
	}
	res.Idle, res.During = failoverLatency(idle), failoverLatency(during)
	return res, nil
}

// ReencryptBenchResult is everything `keyward bench reencrypt` measures.
type ReencryptBenchResult struct {
	Rows []ReencryptRow       `json:"rows"`
	Live *ReencryptLiveResult `json:"live,omitempty"`
}

// ReencryptRow is one job next to the raw floors for its asset size,
// measured on the same stack.
type ReencryptRow struct {
	Share    float64            `json:"kms_rate_share"` // 0: unlimited
	Job      ReencryptJobResult `json:"job"`
	RawStore ReencryptBaseline  `json:"raw_object_store_get_put"`
	RawAEAD  ReencryptBaseline  `json:"raw_aes_gcm_open_seal"`
}

// ReencryptBench runs, for each rate share on a fresh stack and each size,
// a heal and a rotation job with the raw baselines for that size, then, on
// the first stack, the live-traffic latency idle and during a heal of the
// largest size.
func ReencryptBench(ctx context.Context, o ReencryptOptions, sizes []int, shares []float64) (*ReencryptBenchResult, error) {
	out := &ReencryptBenchResult{}
	for si, share := range shares {
		err := func() error {
			dir, err := os.MkdirTemp("", "keyward-bench-reencrypt")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			d, err := StartDev(ctx, ReencryptDevOptions(dir, share))
			if err != nil {
				return err
			}
			defer d.Stop()
			for _, size := range sizes {
				so := o
				so.Size = size
				store, crypto, err := ReencryptBaselines(ctx, d, so.N(), size)
				if err != nil {
					return err
				}
				setup, err := PrepareHeal(ctx, d, so)
				if err != nil {
					return err
				}
				heal, err := setup.Heal(ctx, d, so.withDefaults().Timeout)
				if err != nil {
					return err
				}
				rot, err := setup.Rotate(ctx, d, so.withDefaults().Timeout)
				if err != nil {
					return err
				}
				out.Rows = append(out.Rows, ReencryptRow{Share: max(share, 0), Job: heal, RawStore: store, RawAEAD: crypto},
					ReencryptRow{Share: max(share, 0), Job: rot, RawStore: store, RawAEAD: crypto})
			}
			if si == 0 && len(sizes) > 0 {
				lo := o
				lo.Size = sizes[len(sizes)-1]
				if out.Live, err = ReencryptLive(ctx, d, lo); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func fmtSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}

func fmtShare(s float64) string {
	if s <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(s, 'g', -1, 64)
}

// benchReencryptCmd is `keyward bench reencrypt`.
func (a *App) benchReencryptCmd() *cobra.Command {
	var o ReencryptOptions
	var sizes []int
	var shares []float64
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Measure the re-encryptor: heal and rotation jobs through the AWS KMS emulator, next to raw Object Store and AES-GCM floors, and live latency during a job",
		Long: `reencrypt starts in-process Keyward stacks (like keyward dev, in temporary
directories, on free ports), one per --rate-share, and measures, for each
--size, through the AWS KMS emulator (local-kms via the real AWS SDK):

  - heal: a tenant's key is announced unavailable (KV KW_KEY_STATUS, as the
    key-health-monitor would), --n assets are stored under the fallback key,
    the key is announced available; timed until the heal job's record is
    completed and finalized (re-encrypted under a fresh seed, verified);
  - rotation: the tenant's key is rotated to a new emulator key; timed
    until the rotation job's record is completed and finalized (each
    asset's seed rewrapped, the payload copied);

next to the raw floors of the same run for the same bytes: an Object Store
get + put of each asset (4 at a time, like the job) and AES-256-GCM open +
seal of each asset on one core. Then, on the first stack, the decision
latency of live traffic of the local-key tenant "demo" (1 KiB, --live-rate
per second) with no job running and while a heal of the largest size runs.

--rate-share is the re-encryptor's share of each endpoint's default KMS
rate limit (0: unlimited). Figures go to docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(sizes) == 0 || len(shares) == 0 {
				return usageError{errors.New("--size and --rate-share need at least one value")}
			}
			for _, s := range sizes {
				if s <= 0 {
					return usageError{fmt.Errorf("--size %d: must be positive", s)}
				}
			}
			res, err := ReencryptBench(cmd.Context(), o, sizes, shares)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.Stdout, "keyward bench reencrypt: AWS KMS emulator, up to %d assets (%d MiB) per job, GOMAXPROCS=%d, %s/%s, %s\n\n",
				o.withDefaults().Assets, o.withDefaults().MaxMiB, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSIZE\tKMS RATE SHARE\tASSETS\tTIME\tASSETS/S\tMIB/S\tMOVING ASSETS/S\tMOVING MIB/S\tKMS CALLS\tRAW STORE GET+PUT ASSETS/S\tRATIO\tRAW AES-GCM OPEN+SEAL MIB/S\tRATIO")
			for _, r := range res.Rows {
				j := r.Job
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%.0f\t%.1f\t%.0f\t%.1f\t%d\t%.0f\t%.2f\t%.0f\t%.4f\n",
					j.Purpose, fmtSize(j.Size), fmtShare(r.Share), j.Done, fmtMS(j.Elapsed), j.AssetsPerSec(), j.MiBPerSec(),
					j.MovingAssetsPerSec(), j.MovingMiBPerSec(), j.KMSCalls,
					r.RawStore.AssetsPerSec, j.MovingAssetsPerSec()/r.RawStore.AssetsPerSec, r.RawAEAD.MiBPerSec(), j.MovingMiBPerSec()/r.RawAEAD.MiBPerSec())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.Stdout, "\nTIME, ASSETS/S, MIB/S: from the trigger to the job record completed and finalized. MOVING: from the job's start to its last")
			fmt.Fprintln(a.Stdout, "AssetReencrypted (the ratios use these). Raw floors on the same server, same bytes, measured before each size's jobs.")
			if l := res.Live; l != nil {
				fmt.Fprintf(a.Stdout, "\nlive traffic, tenant %q, 1 KiB at %.0f/s, publish → AssetEncrypted:\n  idle:            %s\n  during the heal: %s\n  (heal of %d × %s under this traffic: %s, %.0f assets/s, %.1f MiB/s; moving %.0f assets/s, %.1f MiB/s)\n",
					DemoTenant, l.Rate, l.Idle, l.During, l.Heal.Done, fmtSize(l.Heal.Size), fmtMS(l.Heal.Elapsed), l.Heal.AssetsPerSec(), l.Heal.MiBPerSec(),
					l.Heal.MovingAssetsPerSec(), l.Heal.MovingMiBPerSec())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Assets, "n", 2000, "assets per job")
	f.IntVar(&o.MaxMiB, "max-mib", 256, "at most this many MiB of assets per job (caps --n for large sizes)")
	f.IntSliceVar(&sizes, "size", []int{1 << 10, 1 << 20}, "bytes per asset; one heal and one rotation per size")
	f.Float64SliceVar(&shares, "rate-share", []float64{reencryptor.DefaultKMSRateShare, 0}, "re-encryptor's share of each endpoint's default KMS rate limit, one stack per value (0: unlimited)")
	f.Float64Var(&o.LiveRate, "live-rate", 100, "live traffic assets per second")
	f.DurationVar(&o.LiveFor, "live-for", 3*time.Second, "how long the idle live-traffic measurement runs")
	return cmd
}
