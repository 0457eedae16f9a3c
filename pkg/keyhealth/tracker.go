package keyhealth

import (
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// DefaultThreshold is how many consecutive results must agree on a new
// status before a key's status changes: 3.
//
// One result is not enough: a single timeout, a dropped connection or one
// 5xx is routine for any cloud API, and a status change is expensive — it
// moves tenants' new assets to fallback or rejects them, flushes cached
// seeds in every encryptor and emails the tenant. Two agreeing results 10 s
// apart are already a good signal; the third halves the false-alarm rate
// again for a cost of one unhealthy interval (10 s) on the probe path, and
// of about a second when workers report live failures (observations count
// like probes). Recovery needs the same three results, so a key that comes
// back for one probe in a flapping outage is not announced as available
// and then unavailable again. Live traffic does not wait for the status:
// encryptors fail over on their own errors and breakers, so detection
// latency only delays notifications and healing.
const DefaultThreshold = 3

// Transition is a proposed change of a key's status.
type Transition struct {
	From, To events.KeyStatus
	// Reason of the result that completed the run (KeyStatusChanged.reason).
	Reason string
	// Since is when the run of agreeing results began: when the key
	// entered To. It is stable while the transition is re-proposed, so
	// the event id derived from it is too.
	Since time.Time
	// Latency and Source of the result that completed the run.
	Latency time.Duration
	Source  string
}

// Tracker derives one key's status from its results with hysteresis. It is
// not safe for concurrent use; the monitor serialises each key's results.
type Tracker struct {
	threshold int

	status events.KeyStatus
	reason string
	since  time.Time

	candidate events.KeyStatus
	streak    int
	start     time.Time // of the candidate's run
}

// NewTracker returns a tracker of a key with no status yet
// (events.KeyStatusUnknown). threshold < 1 means DefaultThreshold.
func NewTracker(threshold int) *Tracker {
	if threshold < 1 {
		threshold = DefaultThreshold
	}
	return &Tracker{threshold: threshold}
}

// Seed sets the committed status, e.g. from the key's KW_KEY_STATUS record
// after a restart or a takeover, and clears any candidate.
func (t *Tracker) Seed(status events.KeyStatus, reason string, since time.Time) {
	t.status, t.reason, t.since = status, reason, since
	t.candidate, t.streak = events.KeyStatusUnknown, 0
}

// Status returns the committed status, its reason and since when.
func (t *Tracker) Status() (events.KeyStatus, string, time.Time) { return t.status, t.reason, t.since }

// Candidate returns the status the latest disagreeing results argue for and
// how many consecutive results did (KeyStatusUnknown, 0 when none).
func (t *Tracker) Candidate() (events.KeyStatus, int) { return t.candidate, t.streak }

// Pending reports whether results currently disagree with the committed
// status (the monitor then probes at the unhealthy interval).
func (t *Tracker) Pending() bool { return t.streak > 0 }

// Threshold returns the number of agreeing results a change needs.
func (t *Tracker) Threshold() int { return t.threshold }

// Observe counts one result. It returns a Transition once Threshold
// consecutive results agree on a status other than the committed one; the
// committed status does not change until Commit. Inconclusive results are
// ignored: they neither extend nor break a run.
func (t *Tracker) Observe(r Result) (Transition, bool) {
	st := r.Status()
	switch {
	case st == events.KeyStatusUnknown:
		return Transition{}, false
	case st == t.status:
		t.candidate, t.streak = events.KeyStatusUnknown, 0
		return Transition{}, false
	case st == t.candidate:
		t.streak++
	default:
		t.candidate, t.streak, t.start = st, 1, r.At
	}
	if t.streak < t.threshold {
		return Transition{}, false
	}
	return Transition{
		From: t.status, To: st, Reason: r.Reason, Since: t.start,
		Latency: r.Latency, Source: r.Source,
	}, true
}

// Commit applies a transition returned by Observe, once it is published.
func (t *Tracker) Commit(tr Transition) {
	t.status, t.reason, t.since = tr.To, tr.Reason, tr.Since
	t.candidate, t.streak = events.KeyStatusUnknown, 0
}
