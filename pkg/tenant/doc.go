// Package tenant holds a tenant's customer-managed-key configuration, where
// it is stored, and the encryption decision made for every asset.
//
// # The document
//
// A Config is a JSON document with stable snake_case names. It is what
// `keyward tenant apply -f tenant.json` takes (schemas/tenant.schema.json,
// example in schemas/examples/tenant.json):
//
//	{
//	  "tenant_id": "acme",
//	  "display_name": "Acme Corp",
//	  "keys": [{"uri": "awskms://arn:aws:kms:eu-west-2:111122223333:key/<id>",
//	            "role": "primary", "enrolled_at": "2026-01-15T09:00:00Z"}],
//	  "services": ["cloud_recording", "phone_recording"],
//	  "licensed_users": ["*"],
//	  "recipients": ["security@acme.example"],
//	  "fallback_enabled": true,
//	  "phone": {"drop_calls": false},
//	  "updated_at": "2026-02-01T10:00:00Z"
//	}
//
// Keys are the tenant's enrolled customer keys (KEKs in AWS KMS, OCI Vault
// or Azure Key Vault), named by canonical key URIs (kms.KeyURI.String): one
// primary that encrypts new assets, replicas (the same key material on
// another endpoint) and retiring keys (still decrypt while their assets are
// rewrapped). Services and LicensedUsers select what is covered; ["*"]
// selects all, an empty list selects nothing. Fallback means the platform's
// fallback key is used while the customer key is unreachable, and the asset
// is re-encrypted under the customer key when it returns; FallbackOn "any"
// extends that to a revoked key (the default, "outage", rejects instead: a
// revocation is the customer's decision). HoldWindow keeps assets pending
// during a short outage before either happens. Phone.DropCalls
// drops a covered call that cannot be recorded instead of continuing it
// without a recording. DeniedPurposes lists the purposes
// (events.Purposes) for which the key broker never releases the tenant's
// keys, whatever the reader's own grant (Config.PurposeDenied).
//
// Validate reports every problem at once as an errors.Join of
// *events.FieldError naming the JSON path ("keys[1].uri"), the problem and
// the fix; all match events.ErrInvalid. localkms:// keys are accepted only
// with AllowLocalKeys(true) (dev mode, tests); WithServiceCatalog restricts
// services to those the platform offers (DefaultServices by default in a
// platform). Parse decodes strictly (exact field names; an unknown field is
// reported with the closest known name within edit distance 2) and then
// validates.
//
// # Where it is stored
//
// Store keeps one document per tenant in JetStream KV bucket KW_TENANTS
// (events.BucketTenants) under the tenant id. Every write is validated and
// stamps UpdatedAt. Updates are revision-checked: Config.Revision is the KV
// revision a document was read at, Update succeeds only if the key is still
// at that revision and otherwise fails with ErrConflict, so two admins can
// never silently overwrite each other. Apply (create or replace, checked
// against the revision read just before) is what `tenant apply` does;
// Modify is a read-modify-write loop that retries on ErrConflict a bounded
// number of times. Stored documents are read leniently (unknown fields
// ignored, so older workers read documents written by newer builds) and
// validated; one that fails is reported as ErrInvalidStored.
//
// Cache watches the bucket and keeps every valid configuration in memory so
// workers decide without I/O per asset. Invalid stored documents are logged
// and skipped; the tenant keeps its last valid configuration.
//
// # The encryption decision
//
// Decide(cfg, asset, status) is a pure function. First the asset's coverage
// (Config.Coverage), checked in this order, the first failure naming it:
//
//	check                                    coverage when it fails
//	cfg != nil and it has a primary key      not_enrolled
//	no deprovisioning scheduled, or          deprovisioned
//	  asset.CreatedAt < Deprovision.At
//	asset.CreatedAt >= CoveredSince()        before_enrollment
//	service in Services (or "*")             service_not_selected
//	owner in LicensedUsers (or "*")          user_not_licensed
//	origin is not local_upload               local_upload
//	(all pass)                               covered
//
// CoveredSince is the earliest enrolled_at of the tenant's keys; an asset
// created exactly then is covered. A scheduled deprovisioning (Deprovision,
// set by the enrollment service) covers no asset created at or after its
// date; Config.Deprovisioning(now) tells workers it has started, and the
// re-encryptor sets DeprovisionedAt and removes every key when it completed
// (a configuration with DeprovisionedAt has no keys). Retiring keys never
// encrypt new assets. Then, with status the primary key's
// status (an open endpoint breaker counts as unavailable):
//
//	coverage     key status                  fallback  decision
//	not covered  any                         any       platform
//	covered      unknown, available,         any       customer (KeyURI = primary key)
//	             degraded
//	covered      unavailable                 enabled   fallback
//	covered      unavailable                 disabled  reject: customer_key_unavailable
//	covered      revoked                     any       reject: customer_key_revoked
//
// A revocation is the customer's decision, so it is never overridden by
// fallback. A status this build does not know counts as unavailable. When
// the customer-key call itself fails, the caller classifies the failure into
// the status it observed and calls Decide again; there is no separate
// after-failure function.
//
// # Errors
//
//   - ErrNotFound: no configuration for the tenant (Get, Modify, Delete).
//   - ErrExists: Create of an existing tenant.
//   - ErrConflict: a revision check failed (Update, Apply, Delete; Modify
//     after its attempts).
//   - ErrInvalidStored: the stored document is not JSON, is stored under
//     another tenant's key, or fails validation.
//   - events.ErrInvalid (*events.FieldError): the document or tenant id
//     given is invalid; nothing was written.
//   - JetStream and context errors, wrapped with %w.
//
// Every error names the operation and the tenant.
//
// The package emits no metrics or traces; Cache logs skipped documents with
// slog (tenant, revision, problem; never the document).
package tenant
