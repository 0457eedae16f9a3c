package reencryptor

import (
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/svc"
)

// Defaults of the re-encryptor. docs/reencryption.md explains each.
const (
	// DefaultBatchSize is how many assets are moved between checkpoints.
	DefaultBatchSize = 64
	// DefaultConcurrency is how many assets of a batch are moved at once.
	DefaultConcurrency = 4
	// DefaultProgressInterval between ReencryptionProgress events of a
	// running job (state changes are published at once).
	DefaultProgressInterval = 2 * time.Second
	// DefaultRescanInterval: every tenant is checked this often for work
	// (fallback copies to heal, retiring keys, a deprovisioning date
	// reached), besides the checks key-status and configuration changes
	// trigger at once.
	DefaultRescanInterval = 10 * time.Second
	// DefaultLeaseTTL: a job whose instance stopped renewing its lease for
	// this long is taken over by another instance.
	DefaultLeaseTTL = 30 * time.Second
	// DefaultYieldBacklog: while the encryptor's consumer has more than
	// this many messages waiting or in flight, jobs wait between batches:
	// live traffic goes first.
	DefaultYieldBacklog = 64
	// DefaultKMSRateShare is the fraction of each endpoint's default KMS
	// rate limit (kms.DefaultRateLimits) the re-encryptor may use; the rest
	// is the encryptors' and the monitor's. Seeds are cached, so a job calls
	// the KMS about once per 4096 assets moved.
	DefaultKMSRateShare = 0.2
	// DefaultDeprovisionGrace: after a deprovisioned tenant's keys are
	// removed from its configuration, the job waits this long for assets
	// the encryptors had in flight, then walks once more before it
	// publishes DeprovisionCompleted.
	DefaultDeprovisionGrace = 5 * time.Second
	// DefaultMaxFailedPasses: a job whose remaining candidates all failed
	// in this many consecutive passes completes and reports them (Failed).
	DefaultMaxFailedPasses = 3
	// smallAsset: assets up to this size are re-encrypted and verified in
	// memory; larger ones through a temporary object.
	smallAsset = 1 << 20
)

// Deps are the connections and stores a Worker uses. The caller owns them,
// so `keyward dev` can share one NATS connection.
type Deps struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// KMS is the re-encryptor's own client: rate-limited to its share of
	// each endpoint (WithKMSRateShare in providers.Config), with circuit
	// breakers if the caller wants them.
	KMS *kms.Client
	// Seeds caches seeds (new ones for re-encryption, unwrapped ones for
	// rewraps) over KMS.
	Seeds *kms.SeedCache
	// Ledger is the re-encryptor's own bbolt ledger, projected from
	// KW_ASSETS.
	Ledger *ledger.Store
}

// Options tune a Worker. The zero value is the production configuration
// except for PlatformKey and FallbackKey, which must be set.
type Options struct {
	// PlatformKey is where deprovisioning moves a tenant's assets.
	PlatformKey kms.KeyURI
	// FallbackKey is the platform fallback key heal jobs move assets away
	// from (named in their events).
	FallbackKey kms.KeyURI
	// BatchSize assets are moved between checkpoints (64).
	BatchSize int
	// Concurrency assets of a batch are moved at once (4).
	Concurrency int
	// ChunkConcurrency seals the chunks of one large asset on this many
	// cores (default: 1, so a job leaves cores to live traffic).
	ChunkConcurrency int
	// ProgressInterval between progress events of a running job (2 s).
	ProgressInterval time.Duration
	// RescanInterval between checks of every tenant for work (10 s).
	RescanInterval time.Duration
	// LeaseTTL of a job's owner (30 s).
	LeaseTTL time.Duration
	// YieldBacklog: jobs wait while the encryptor's consumer has more than
	// this many messages pending (64; negative: never wait).
	YieldBacklog int
	// DeprovisionGrace (5 s).
	DeprovisionGrace time.Duration
	// MaxFailedPasses (3).
	MaxFailedPasses int
	// AllowLocalCustomerKeys accepts localkms:// customer keys in tenant
	// configurations (dev and tests).
	AllowLocalCustomerKeys bool
	// InstanceID names this instance as a job's owner (default: host, pid
	// and a random suffix).
	InstanceID    string
	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
	// Failpoint, if set, is called at named points of a job (testing aid):
	// "moved" after an object was replaced and before it is recorded,
	// "recorded" after a batch's events are published and before the
	// checkpoint.
	Failpoint func(point string)
}

// Failpoints.
const (
	FailpointMoved    = "moved"
	FailpointRecorded = "recorded"
)

func (o *Options) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.ChunkConcurrency <= 0 {
		o.ChunkConcurrency = 1
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.RescanInterval <= 0 {
		o.RescanInterval = DefaultRescanInterval
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.YieldBacklog == 0 {
		o.YieldBacklog = DefaultYieldBacklog
	}
	if o.DeprovisionGrace <= 0 {
		o.DeprovisionGrace = DefaultDeprovisionGrace
	}
	if o.MaxFailedPasses <= 0 {
		o.MaxFailedPasses = DefaultMaxFailedPasses
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.InstanceID == "" {
		o.InstanceID = svc.InstanceID("re-encryptor")
	}
	if o.Failpoint == nil {
		o.Failpoint = func(string) {}
	}
}

func (o *Options) validate(d Deps) error {
	var errs []error
	if d.NC == nil || d.JS == nil {
		errs = append(errs, errors.New("re-encryptor: a NATS connection and JetStream context are required"))
	}
	if d.KMS == nil || d.Seeds == nil {
		errs = append(errs, errors.New("re-encryptor: a KMS client and a seed cache are required"))
	}
	if d.Ledger == nil {
		errs = append(errs, errors.New("re-encryptor: a ledger is required"))
	}
	if o.PlatformKey.IsZero() {
		errs = append(errs, errors.New("re-encryptor: the platform key is required (deprovisioning moves assets to it)"))
	}
	if o.FallbackKey.IsZero() {
		errs = append(errs, errors.New("re-encryptor: the fallback key is required (heal jobs move assets away from it)"))
	}
	return errors.Join(errs...)
}
