package encryptor

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/platform"
)

// Defaults of the encryptor. docs/operations.md explains each.
const (
	DefaultBatchSize      = 256
	DefaultLanes          = 4
	DefaultMaxInlineBytes = 256 << 10
	DefaultMaxAssetBytes  = 64 << 30
	DefaultMaxDeliver     = 10
	DefaultAckWait        = 60 * time.Second
	// smallAsset is the size up to which an asset is encrypted in memory and
	// stored with the rest of its batch (one round trip for all), instead
	// of streamed through a pipe. It bounds a batch's memory to
	// BatchSize × smallAsset.
	smallAsset = 256 << 10
)

// Deps are the connections and stores a Worker uses. The caller owns them
// (opens and closes them), so `keyward dev` can share one NATS connection.
type Deps struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	KMS    *kms.Client
	Seeds  *kms.SeedCache
	Ledger *ledger.Store

	// The request-reply services this process serves, each as its own NATS
	// identity (pkg/access) when authentication is on; a nil field falls
	// back to NC / JS (an unauthenticated deployment).
	//
	// BrokerNC serves keyward.key.unwrap.* (role key-broker, account
	// KEYWARD_SERVICES, so requests carry the caller's identity).
	BrokerNC *nats.Conn
	// EnrollNC serves keyward.key.enroll.* (role enrollment, account
	// KEYWARD_SERVICES); EnrollJS is the enrollment service's data plane:
	// tenant writes and lifecycle events (role admin).
	EnrollNC *nats.Conn
	EnrollJS jetstream.JetStream
}

func (d Deps) brokerNC() *nats.Conn {
	if d.BrokerNC != nil {
		return d.BrokerNC
	}
	return d.NC
}

func (d Deps) enrollNC() *nats.Conn {
	if d.EnrollNC != nil {
		return d.EnrollNC
	}
	return d.NC
}

func (d Deps) enrollJS() jetstream.JetStream {
	if d.EnrollJS != nil {
		return d.EnrollJS
	}
	return d.JS
}

// Options tune a Worker.
type Options struct {
	// PlatformKey encrypts assets that are not covered by a customer key.
	PlatformKey kms.KeyURI
	// FallbackKey encrypts covered assets while the customer key is
	// unreachable and the tenant allows fallback.
	FallbackKey kms.KeyURI
	// BatchSize is how many messages are fetched and committed together
	// (one ledger transaction, one wait for publish acks).
	BatchSize int
	// Concurrency is how many assets of a batch are processed at once.
	Concurrency int
	// Lanes is how many batches are in flight at once (default 4).
	Lanes int
	// ChunkConcurrency seals the chunks of one large asset on this many
	// cores (cobblestone.WithConcurrency).
	ChunkConcurrency int
	// MaxInlineBytes bounds inline content (decoded).
	MaxInlineBytes int64
	// MaxAssetBytes bounds staged content.
	MaxAssetBytes int64
	// MaxDeliver bounds deliveries of a message that keeps failing
	// transiently; then it is dead-lettered.
	MaxDeliver int
	// AckWait is how long a delivered message may stay unacknowledged
	// before JetStream redelivers it; long assets send progress to extend it.
	AckWait time.Duration
	// ObservationTTL is how long a customer key that failed in live
	// traffic (unreachable or unusable) is taken to be away by the assets
	// that follow, before one of them tries it again
	// (DefaultObservationTTL, 2 s; negative: each asset tries the key
	// itself). A successful call ends it at once.
	ObservationTTL time.Duration
	// AllowLocalCustomerKeys accepts localkms:// customer keys in tenant
	// configurations and enrollments (keyward dev and tests only).
	AllowLocalCustomerKeys bool
	// AuthorizeCallers makes the request-reply services of this process
	// check who asks, from the server-set Nats-Request-Info: the key broker
	// releases an asset's key only to a reader within its services and
	// purposes and the tenant's denied purposes (broker.Options.Authorize);
	// the enrollment service accepts changes only from an operator or an
	// admin of that tenant (enroll.Authorize). On wherever NATS
	// authenticates; off only for unauthenticated tests and keyward dev
	// --no-auth.
	AuthorizeCallers bool
	// Platform describes the platform's identities and served regions
	// (enrollment checks regions and tells tenants whom to grant).
	Platform platform.Config
	// Name names the worker in dead letters and ce-source (default "encryptor").
	Name string

	// Failpoint, if set, is called at each named point of the commit
	// protocol (FailpointStored, FailpointRecorded, FailpointPublished,
	// FailpointCleaned). Crash tests kill the process there; see
	// KEYWARD_FAILPOINT in docs/operations.md. Nil in production.
	Failpoint func(point string)

	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
}

// Failpoints: the moments of the commit protocol at which a crash must lose
// nothing and double nothing.
const (
	FailpointStored    = "stored"    // ciphertext in the vault; nothing published or recorded
	FailpointPublished = "published" // outcome published; not recorded in the ledger
	FailpointRecorded  = "recorded"  // recorded; staging copy not deleted, not acked
	FailpointCleaned   = "cleaned"   // staging copy deleted; not acked
)

func (o *Options) failpoint(point string) {
	if o.Failpoint != nil {
		o.Failpoint(point)
	}
}

func (o *Options) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4 * runtime.GOMAXPROCS(0)
	}
	if o.Lanes <= 0 {
		o.Lanes = DefaultLanes
	}
	if o.ChunkConcurrency <= 0 {
		o.ChunkConcurrency = runtime.GOMAXPROCS(0)
	}
	if o.MaxInlineBytes <= 0 {
		o.MaxInlineBytes = DefaultMaxInlineBytes
	}
	if o.MaxAssetBytes <= 0 {
		o.MaxAssetBytes = DefaultMaxAssetBytes
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = DefaultMaxDeliver
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.ObservationTTL == 0 {
		o.ObservationTTL = DefaultObservationTTL
	}
	if o.Name == "" {
		o.Name = "encryptor"
	}
	if len(o.Platform.OCI.AllowedRegions) == 0 {
		o.Platform.OCI.AllowedRegions = platform.DefaultOCIRegions
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate(d Deps) error {
	var errs []error
	if d.NC == nil || d.JS == nil || d.KMS == nil || d.Seeds == nil || d.Ledger == nil {
		errs = append(errs, errors.New("encryptor: Deps needs NC, JS, KMS, Seeds and Ledger"))
	}
	if o.PlatformKey.IsZero() {
		errs = append(errs, errors.New("encryptor: a platform key is required (KEYWARD_PLATFORM_KEY)"))
	}
	if o.FallbackKey.IsZero() {
		errs = append(errs, errors.New("encryptor: a fallback key is required (KEYWARD_FALLBACK_KEY)"))
	}
	if o.MaxInlineBytes > 700<<10 {
		errs = append(errs, fmt.Errorf("encryptor: max inline bytes %d does not fit a 1 MiB message once base64-encoded; at most %d", o.MaxInlineBytes, 700<<10))
	}
	return errors.Join(errs...)
}
