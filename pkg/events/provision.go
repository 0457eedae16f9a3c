package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Retention and limits of Keyward's streams and buckets. They are part of the
// operational contract (docs/operations.md explains each choice).
const (
	// IngestMaxAge keeps AssetCreated events a week: long enough to replay a
	// weekend's traffic after an incident, short enough that the ingest
	// stream never grows without bound. Staged objects live as long.
	IngestMaxAge = 7 * 24 * time.Hour
	// IngestDuplicates is the window in which a producer's retried publish
	// with the same Nats-Msg-Id is dropped.
	IngestDuplicates = 10 * time.Minute
	// AssetsDuplicates is the window in which a worker's republished outcome
	// (after a crash between publish and ack) is dropped. It is longer than
	// the encryptor's AckWait times its MaxDeliver budget of quick retries.
	AssetsDuplicates = 15 * time.Minute
	// DLQMaxAge keeps dead letters for 30 days, for ops to inspect and redrive.
	DLQMaxAge = 30 * 24 * time.Hour
	// KeysMaxAge keeps key status history for a year (audit, replay).
	KeysMaxAge = 365 * 24 * time.Hour
	// ReencryptMaxAge keeps re-encryption job progress and completion
	// events 30 days: enough to follow a long job and look back at it.
	ReencryptMaxAge = 30 * 24 * time.Hour
	// LifecycleMaxAge keeps a tenant's key lifecycle events (rotation,
	// deprovisioning) a year, like key status history (audit, replay).
	LifecycleMaxAge = KeysMaxAge
	// LifecycleDuplicates is the window in which a republished lifecycle
	// event (same Nats-Msg-Id, e.g. rotation_started.<tenant>.<revision>)
	// is dropped.
	LifecycleDuplicates = 10 * time.Minute
	// MaxMessageBytes bounds every event message (the server's default
	// max_payload); inline content must fit well inside it.
	MaxMessageBytes = 1 << 20
	// TenantsHistory keeps the last revisions of each tenant document.
	TenantsHistory = 10
	// KeyStatusHistory keeps the last statuses of each key.
	KeyStatusHistory = 5
	// KeyHealthLeaseTTL is how long a key-health-monitor's partition lease
	// or heartbeat lives in BucketKeyHealthLeases without a renewal: a
	// crashed instance's partitions are taken over within about this long.
	// Instances renew every quarter of it, so a renewal may fail three
	// times in a row before a lease is lost.
	KeyHealthLeaseTTL = 15 * time.Second
)

// ProvisionOptions tune provisioning for the deployment.
type ProvisionOptions struct {
	// Replicas of every stream and bucket: 1 for `keyward dev` and tests, 3
	// in production (R3 on a 3+ node cluster).
	Replicas int
	// Storage defaults to file storage.
	Storage jetstream.StorageType
	// KeyHealthLeaseTTL overrides KeyHealthLeaseTTL (tests shorten it).
	KeyHealthLeaseTTL time.Duration
}

// StreamConfigs returns the declared configuration of every Keyward stream.
func StreamConfigs(o ProvisionOptions) []jetstream.StreamConfig {
	r := replicas(o)
	return []jetstream.StreamConfig{
		{
			Name:        StreamIngest,
			Description: "AssetCreated events from producers (keyward.asset.created.<tenant>)",
			Subjects:    []string{SubjectAssetCreatedAll},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      IngestMaxAge,
			Duplicates:  IngestDuplicates,
			MaxMsgSize:  MaxMessageBytes,
			Storage:     o.Storage,
			Replicas:    r,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamAssets,
			Description: "Log of record: AssetEncrypted, AssetRejected, AssetReencrypted (keyward.asset.*.<tenant>)",
			Subjects:    []string{SubjectAssetEncryptedAll, SubjectAssetRejectedAll, SubjectAssetReencryptedAll},
			Retention:   jetstream.LimitsPolicy,
			Duplicates:  AssetsDuplicates,
			MaxMsgSize:  MaxMessageBytes,
			Storage:     o.Storage,
			Replicas:    r,
			// Never discard: ledgers are rebuilt from this stream.
			Discard: jetstream.DiscardNew,
		},
		{
			Name:        StreamDLQ,
			Description: "Dead letters: original subject, headers and bytes, with the reason (keyward.dlq.<reason>)",
			Subjects:    []string{SubjectDLQAll},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      DLQMaxAge,
			Duplicates:  2 * time.Minute,
			Storage:     o.Storage,
			Replicas:    r,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamPhone,
			Description: "Live phone calls (CallStarted, CallEnded on keyward.phone.call.{started,ended}.<tenant>) and the phone-policy worker's CallAction (keyward.phone.action.<tenant>)",
			Subjects:    []string{SubjectCallEventsAll, SubjectCallActionAll},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      PhoneMaxAge,
			Duplicates:  PhoneDuplicatesWindow,
			MaxMsgSize:  MaxMessageBytes,
			Storage:     o.Storage,
			Replicas:    r,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamKeys,
			Description: "KeyStatusChanged events (keyward.key.status.<tenant>) and KMS breaker state changes (keyward.kms.breaker.<provider>)",
			Subjects:    []string{SubjectKeyStatusAll, SubjectBreakerAll},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      KeysMaxAge,
			Duplicates:  10 * time.Minute,
			MaxMsgSize:  MaxMessageBytes,
			Storage:     o.Storage,
			Replicas:    r,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamReencrypt,
			Description: "Re-encryption job events: ReencryptionProgress and ReencryptionCompleted (keyward.reencrypt.{progress,completed}.<tenant>)",
			Subjects:    []string{SubjectReencryptProgressAll, SubjectReencryptCompletedAll},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      ReencryptMaxAge,
			Duplicates:  2 * time.Minute,
			MaxMsgSize:  MaxMessageBytes,
			Storage:     o.Storage,
			Replicas:    r,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamLifecycle,
			Description: "Key lifecycle events: rotation started/completed, deprovisioning scheduled/cancelled/completed (keyward.lifecycle.<event>.<tenant>)",
			Subjects:    []string{SubjectLifecycleEvents},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      LifecycleMaxAge,
			Duplicates:  LifecycleDuplicates,
			MaxMsgSize:  MaxMessageBytes,
			Storage:     o.Storage,
			Replicas:    r,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamAudit,
			Description: "Audit records: the key broker's KeyAccess, every release and refusal of an asset's key (keyward.audit.key_access.<tenant>)",
			Subjects:    []string{SubjectAuditAll},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      KeysMaxAge,
			Duplicates:  10 * time.Minute,
			MaxMsgSize:  MaxMessageBytes,
			Storage:     o.Storage,
			Replicas:    r,
			Discard:     jetstream.DiscardOld,
		},
	}
}

// ObjectStoreConfigs returns the declared Object Store buckets.
func ObjectStoreConfigs(o ProvisionOptions) []jetstream.ObjectStoreConfig {
	r := replicas(o)
	return []jetstream.ObjectStoreConfig{
		{
			Bucket:      BucketStaging,
			Description: "Plaintext staged by producers until the encryptor processes it",
			TTL:         IngestMaxAge,
			Storage:     o.Storage,
			Replicas:    r,
		},
		{
			Bucket:      BucketVault,
			Description: "Ciphertext, one object per asset: <tenant>/<asset_id>",
			Storage:     o.Storage,
			Replicas:    r,
		},
	}
}

// KeyValueConfigs returns the declared KV buckets.
func KeyValueConfigs(o ProvisionOptions) []jetstream.KeyValueConfig {
	r := replicas(o)
	return []jetstream.KeyValueConfig{
		{
			Bucket:       BucketTenants,
			Description:  "Tenant configuration documents, keyed by tenant id",
			History:      TenantsHistory,
			MaxValueSize: 256 << 10,
			Storage:      o.Storage,
			Replicas:     r,
		},
		{
			Bucket:       BucketKeyStatus,
			Description:  "Current status of every enrolled customer key",
			History:      KeyStatusHistory,
			MaxValueSize: 16 << 10,
			Storage:      o.Storage,
			Replicas:     r,
		},
		{
			Bucket:       BucketKeyHealthLeases,
			Description:  "Key-health-monitor partition leases and instance heartbeats (entries expire unless renewed)",
			History:      1,
			TTL:          leaseTTL(o),
			MaxValueSize: 1 << 10,
			Storage:      o.Storage,
			Replicas:     r,
		},
		{
			Bucket:       BucketReencryptJobs,
			Description:  "Re-encryptor jobs (heal, rotation, deprovision): state and cursor of each job",
			History:      1,
			MaxValueSize: 64 << 10,
			Storage:      o.Storage,
			Replicas:     r,
		},
	}
}

// Provision creates or updates every stream and bucket Keyward uses. It is
// idempotent: run it at every start-up of every worker and of `keyward dev`.
// All failures are returned joined, each naming the stream or bucket.
func Provision(ctx context.Context, js jetstream.JetStream, o ProvisionOptions) error {
	var errs []error
	for _, cfg := range StreamConfigs(o) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", cfg.Name, err))
		}
	}
	for _, cfg := range ObjectStoreConfigs(o) {
		if _, err := js.CreateOrUpdateObjectStore(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("object store %s: %w", cfg.Bucket, err))
		}
	}
	for _, cfg := range KeyValueConfigs(o) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("key-value bucket %s: %w", cfg.Bucket, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("provisioning JetStream: %w", err)
	}
	return nil
}

func leaseTTL(o ProvisionOptions) time.Duration {
	if o.KeyHealthLeaseTTL > 0 {
		return o.KeyHealthLeaseTTL
	}
	return KeyHealthLeaseTTL
}

func replicas(o ProvisionOptions) int {
	if o.Replicas <= 0 {
		return 1
	}
	return o.Replicas
}
