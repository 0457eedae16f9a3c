// Package reencryptor is the Keyward re-encryptor: the worker that moves a
// tenant's stored assets from one key to another, in resumable jobs.
//
// # Ledger
//
// The worker keeps its own bbolt ledger (pkg/ledger), projected from
// KW_ASSETS (AssetEncrypted, AssetRejected, AssetReencrypted) and indexed by
// tenant, key and mode. It can be rebuilt from the stream at any time
// (-rebuild-ledger); the stream is the log of record.
//
// # Jobs
//
// One job per tenant and purpose, its record in KV KW_REENCRYPT_JOBS under
// "<tenant>.<purpose>":
//
//	purpose      starts when                                  walks                 moves to           how
//	heal         the primary key is usable and fallback       mode fallback         primary, customer  re-encrypt (fresh seed)
//	             copies exist (a KeyStatusChanged back to
//	             available is seen at once)
//	rotation     the tenant has retiring keys                 each retiring key     primary, customer  rewrap the seed (v2);
//	             (keyward tenant key rotate)                                                             v1 envelopes re-encrypt
//	deprovision  the scheduled date is reached                mode customer, then   platform key       rewrap (v2) / re-encrypt (v1)
//	                                                          mode fallback
//
// Assets created before enrollment, uploaded local recordings and services
// the tenant did not select are stored in mode platform; no job walks that
// mode, so they are never touched.
//
// A job walks its sources in asset-id order, BatchSize assets at a time;
// after each batch it publishes one AssetReencrypted per moved asset (and
// waits for the acks), writes them to its ledger and saves its record with
// the new cursor (the checkpoint), renewing its lease. A job walks again
// until a whole pass finds nothing left to move, so assets stored under the
// source while it runs are picked up too.
//
// # Moving one asset
//
// Heal re-encrypts: the old ciphertext is decrypted as it is read, encrypted
// under a fresh seed from the customer key (the platform held the fallback
// key, so rewrapping would leave it a key it can read), the new ciphertext is
// decrypted again and its plaintext digest compared with the original's, and
// only then does it replace the object (assets over 1 MiB go through a
// temporary object "_reencrypt/<tenant>/<asset>" first). Rotation and
// deprovisioning rewrap: the seed is unwrapped with the old key, wrapped under
// the new one (once per seed: a seed serves up to 4096 assets), checked to
// unwrap again and to open the asset's key commitment, and the object is
// rewritten as the new header followed by the old payload bytes, unchanged
// (envelope format 2). The Object Store replaces an object atomically.
//
// Every step is safe to repeat: before moving an asset the job compares the
// object's header with the ledger. An object already under the target key
// (moved by a run killed before it recorded the move) is recorded from the
// object; the event's Nats-Msg-Id ("reencrypted.<tenant>.<asset>.<header
// digest prefix>") makes a second publication of the same move a duplicate,
// and never hides a different one. So a kill -9 at any point neither skips
// an asset nor moves one twice.
//
// # Yielding, pausing, stopping
//
// The worker's KMS client is limited to a share (-kms-rate-share, 20%) of
// each endpoint's default rate limit, and a job waits between batches while
// the encryptor's consumer has more than -yield-backlog messages pending:
// live traffic goes first. Before each batch the job checks the keys it
// needs in KV KW_KEY_STATUS; a key unavailable (or a live KMS call failing
// at its endpoint) pauses the job, which resumes when the key is back; a key
// revoked stops it with reason customer_key_revoked. Either way the assets
// already moved are recorded and the rest are exactly where the ledger says.
//
// # Events
//
// ReencryptionProgress (done, left, rate, ETA, state) on
// keyward.reencrypt.progress.<tenant> every ProgressInterval and at every
// state change; ReencryptionCompleted at the end; then RotationCompleted
// (the retired keys leave the tenant's configuration and may be disabled) or
// DeprovisionCompleted (the tenant's keys leave its configuration; it may
// disable them).
package reencryptor
