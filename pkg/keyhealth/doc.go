// Package keyhealth is the pure logic of the key-health-monitor: how the
// result of one probe or one observed live KMS call is classified, how a
// key's status is derived from a run of results with hysteresis, and when
// a key is probed next. It does no I/O and reads no clock: callers pass the
// time and the randomness in, so every rule is table-tested.
//
// # Terms
//
// A probe is the monitor's own round trip with a tenant's key under the
// tenant's encryption context (purpose kms.PurposeProbe): GenerateDataKey,
// then Decrypt of the returned ciphertext, then a constant-time comparison
// of the two plaintexts. An observation is a worker's report
// (events.KeyObserved) of a live KMS call with the key that failed, or first
// succeeded again. Both become a Result.
//
// # Classes and statuses
//
//	class          from                                              status
//	ok             the round trip succeeded within SlowThreshold     available
//	slow           it succeeded, slower than SlowThreshold            degraded
//	throttled      kms.CodeThrottled                                  degraded
//	unreachable    kms.CodeEndpointUnreachable (timeout, refused,     unavailable
//	               DNS, TLS, 5xx)
//	failed         the probe's own round trip was refused or wrong    unavailable
//	               (kms.CodeInvalidCiphertext, plaintext mismatch)
//	key_unusable   kms.CodeKeyDisabled, CodeAccessDenied,             revoked
//	               CodeKeyNotFound (disabled, pending deletion,
//	               denied, deleted)
//	inconclusive   the caller's cancellation, kms.CodeInvalidArgument, (none: ignored)
//	               kms.CodeInternal; for observations also
//	               kms.CodeInvalidCiphertext (a bad blob says nothing
//	               about the key)
//
// Result.Reason is what KeyStatusChanged.reason carries: "ok", "slow" or the
// kms code, followed by ":" and the provider's own reason where it gave one
// (Classifier.Detail), e.g. "key_disabled:key_pending_deletion" or
// "access_denied:not_allowed".
//
// # Hysteresis
//
// A Tracker holds a key's committed status and a candidate: the status of
// the latest results that disagree with it. A result agreeing with the
// committed status clears the candidate; a result with another status than
// the candidate restarts it. Only Threshold consecutive results agreeing on
// the same new status propose a Transition, so two transitions of one key
// are always at least Threshold results apart: an endpoint that flaps
// faster than that never changes the status more than once per window.
// DefaultThreshold is 3 (see its documentation for why).
//
// A Transition is proposed, not applied: the caller publishes it and then
// calls Commit. Until then the tracker keeps proposing it (with the same
// Since, hence the same event id) on each further agreeing result, so a
// failed publish is retried and deduplicated.
//
// # Schedule
//
// Schedule says when a key is probed next: every Healthy interval (60 s by
// default) while it is available (or not known yet) and no result suggests
// a problem, every Unhealthy interval (10 s) otherwise, each with ±Jitter; First spreads the first
// probes of many keys over the interval as the probe process's steady
// state would (not uniformly: see Schedule.First), so 10,000 tenants never
// start in one burst. Queue is the due-time priority queue the monitor's
// dispatcher takes keys from. Partition maps a tenant to one of P
// partitions (FNV-1a), the unit of ownership between monitor instances;
// Share is how many partitions one of n live instances may hold.
//
// # Errors
//
// Classifier.Outcome returns ErrUnknownOutcome for an observation whose
// outcome is neither "ok", "slow" nor a kms code.
package keyhealth
