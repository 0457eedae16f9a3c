package reencryptor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
)

// Job is the durable record of one re-encryption job, the value of its entry
// in KV KW_REENCRYPT_JOBS under "<tenant>.<purpose>". There is at most one
// job per tenant and purpose: a new job replaces a completed or stopped one
// (compare-and-set on the entry's revision), never a running or paused one.
//
// The record is the job's checkpoint: it is written after every batch, so a
// re-encryptor killed at any point resumes from the last written Cursor.
// Assets after the cursor are examined again; the ledger and the vault
// object say whether each still needs moving, so none is moved twice.
type Job struct {
	ID       string                  `json:"id"`
	TenantID string                  `json:"tenant_id"`
	Purpose  events.ReencryptPurpose `json:"purpose"`
	State    events.JobState         `json:"state"`
	// Reason is a stable code when State is paused or stopped (e.g.
	// customer_key_unavailable, customer_key_revoked); Detail says more.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// ToKeyURI is the key assets are moved to; ToMode their new mode.
	ToKeyURI string      `json:"to_key_uri"`
	ToMode   events.Mode `json:"to_mode"`
	// FromKeys are the keys the job moves assets away from: the fallback
	// key (heal), the retiring keys (rotation), the tenant's keys and the
	// fallback key (deprovisioning).
	FromKeys []string `json:"from_key_uris"`
	// Sources are the ledger indexes the job walks, in order.
	Sources []Source `json:"sources"`
	// Cursor is where the current pass resumes.
	Cursor Cursor `json:"cursor"`
	// Pass counts full walks over the sources (a job walks again until one
	// finds nothing left to move, so assets stored during a pass are
	// picked up too).
	Pass int `json:"pass"`
	// Done counts assets moved; Skipped, assets examined that needed
	// nothing (already moved by an earlier run, or no longer a candidate);
	// Failed, assets that could not be moved in the last pass (they stay
	// where the ledger says and are retried); Left, the candidates not yet
	// examined in this pass, at the last checkpoint.
	Done    int64 `json:"done"`
	Skipped int64 `json:"skipped"`
	Failed  int64 `json:"failed"`
	Left    int64 `json:"left"`
	// Bytes is the plaintext moved.
	Bytes int64 `json:"bytes"`
	// Rate and BytesRate are the recent throughput (per second).
	Rate      float64 `json:"rate"`
	BytesRate float64 `json:"bytes_rate"`
	// FailedAssets names a few assets of the last pass that failed, with
	// why (at most maxFailedListed).
	FailedAssets []FailedAsset `json:"failed_assets,omitempty"`
	// Owner is the re-encryptor instance running the job; LeaseUntil is
	// when another instance may take it over if Owner stops renewing.
	Owner       string    `json:"owner,omitempty"`
	LeaseUntil  time.Time `json:"lease_until,omitzero"`
	StartedAt   time.Time `json:"started_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// PassStats and PassCounted are the current pass's bookkeeping.
	PassStats   passStats `json:"pass_stats"`
	PassCounted bool      `json:"pass_counted,omitempty"`
	// DeprovisionedKeys are the keys a deprovisioning removed from the
	// tenant (named in DeprovisionCompleted).
	DeprovisionedKeys []string `json:"deprovisioned_keys,omitempty"`
	// Finalized is set once a completed job's follow-up (tenant
	// configuration update, RotationCompleted / DeprovisionCompleted) is done.
	Finalized bool `json:"finalized,omitempty"`

	revision uint64
}

// Source is one ledger index a job walks: the assets of the tenant stored
// under Mode, or those whose seed is wrapped under KeyURI (mode customer).
type Source struct {
	Mode   events.Mode `json:"mode,omitempty"`
	KeyURI string      `json:"key_uri,omitempty"`
}

func (s Source) String() string {
	if s.KeyURI != "" {
		return "key " + s.KeyURI
	}
	return "mode " + string(s.Mode)
}

// Cursor is a position in a pass: the source being walked and the last
// asset id examined in it.
type Cursor struct {
	Source int    `json:"source"`
	After  string `json:"after,omitempty"`
}

// FailedAsset is an asset a pass could not move.
type FailedAsset struct {
	AssetID string `json:"asset_id"`
	Error   string `json:"error"`
}

const maxFailedListed = 20

// Terminal reports whether the job has ended (completed or stopped).
func (j *Job) Terminal() bool {
	return j.State == events.JobCompleted || j.State == events.JobStopped
}

// FromKeyURIs are the keys the job moves assets away from.
func (j *Job) FromKeyURIs() []string { return j.FromKeys }

// Revision is the KV revision the record was read at.
func (j *Job) Revision() uint64 { return j.revision }

// JobKey is the KV key of tenant's job for purpose.
func JobKey(tenantID string, purpose events.ReencryptPurpose) string {
	return tenantID + "." + string(purpose)
}

// newJobID names a job: "<tenant>.<purpose>.<start time in base 36 ms>",
// unique per tenant and purpose, sortable by start time.
func newJobID(tenantID string, purpose events.ReencryptPurpose, now time.Time) string {
	return tenantID + "." + string(purpose) + "." + strconv.FormatInt(now.UnixMilli(), 36)
}

// ErrJobConflict: the job record changed since it was read (another
// instance, or a new job replaced it).
var ErrJobConflict = errors.New("re-encryption job changed concurrently")

// Jobs reads and writes job records in KV KW_REENCRYPT_JOBS.
type Jobs struct{ kv jetstream.KeyValue }

// OpenJobs opens the job bucket (it must be provisioned).
func OpenJobs(ctx context.Context, js jetstream.JetStream) (*Jobs, error) {
	kv, err := js.KeyValue(ctx, events.BucketReencryptJobs)
	if err != nil {
		return nil, fmt.Errorf("re-encryption jobs bucket %s: %w", events.BucketReencryptJobs, err)
	}
	return &Jobs{kv: kv}, nil
}

// Get returns tenant's job for purpose, or (nil, nil) when there is none.
func (s *Jobs) Get(ctx context.Context, tenantID string, purpose events.ReencryptPurpose) (*Job, error) {
	e, err := s.kv.Get(ctx, JobKey(tenantID, purpose))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading job %s: %w", JobKey(tenantID, purpose), err)
	}
	return decodeJob(e)
}

func decodeJob(e jetstream.KeyValueEntry) (*Job, error) {
	var j Job
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return nil, fmt.Errorf("job record %s is not valid JSON: %w", e.Key(), err)
	}
	j.revision = e.Revision()
	return &j, nil
}

// List returns every job record (of tenantID only when it is not empty),
// sorted by tenant and purpose.
func (s *Jobs) List(ctx context.Context, tenantID string) ([]*Job, error) {
	filter := ">"
	if tenantID != "" {
		filter = tenantID + ".*"
	}
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing jobs: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []*Job
	for _, k := range keys {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading job %s: %w", k, err)
		}
		j, err := decodeJob(e)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// create stores j as the tenant's job for its purpose, replacing prev (nil:
// there must be none). It fails with ErrJobConflict if the entry moved.
func (s *Jobs) create(ctx context.Context, j *Job, prev *Job) error {
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	key := JobKey(j.TenantID, j.Purpose)
	var rev uint64
	if prev == nil {
		rev, err = s.kv.Create(ctx, key, data)
	} else {
		rev, err = s.kv.Update(ctx, key, data, prev.revision)
	}
	if err != nil {
		if isConflict(err) {
			return ErrJobConflict
		}
		return fmt.Errorf("storing job %s: %w", j.ID, err)
	}
	j.revision = rev
	return nil
}

// save writes j over the revision it was read at.
func (s *Jobs) save(ctx context.Context, j *Job) error {
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	rev, err := s.kv.Update(ctx, JobKey(j.TenantID, j.Purpose), data, j.revision)
	if err != nil {
		if isConflict(err) {
			return ErrJobConflict
		}
		return fmt.Errorf("checkpointing job %s: %w", j.ID, err)
	}
	j.revision = rev
	return nil
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists) || strings.Contains(err.Error(), "wrong last sequence")
}
