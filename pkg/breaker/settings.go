package breaker

import (
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Defaults of Settings (see the package documentation for the reasoning).
const (
	DefaultConsecutiveFailures = 5
	DefaultFailureRatio        = 0.5
	DefaultMinRequests         = 10
	DefaultWindow              = 10 * time.Second
	DefaultOpenTimeout         = 30 * time.Second
	DefaultHalfOpenRequests    = 3
)

// windowBuckets is how many buckets the rolling window is kept in
// (gobreaker's BucketPeriod = Window / windowBuckets): old calls leave the
// window a tenth of it at a time, not all at once.
const windowBuckets = 10

// Settings are the breaker settings of every endpoint of a Set. A zero field
// takes its default; a negative ConsecutiveFailures or FailureRatio turns
// that trip rule off.
type Settings struct {
	// ConsecutiveFailures opens the breaker after this many endpoint
	// failures in a row (default 5). Calls that do not count (throttled,
	// cancelled) do not break a run; any other answer does.
	ConsecutiveFailures int
	// FailureRatio opens the breaker when at least this fraction of the
	// calls counted in Window were endpoint failures (default 0.5; values
	// above 1 are 1) ...
	FailureRatio float64
	// MinRequests ... and at least this many calls were counted in Window
	// (default 10), so one failure out of one call does not open it.
	MinRequests int
	// Window is the rolling window of the failure ratio (default 10s), kept
	// in 10 buckets of Window/10; failures older than Window are forgotten,
	// also by the consecutive rule.
	Window time.Duration
	// OpenTimeout is how long an open breaker refuses every call before it
	// turns half-open and lets trial calls through (default 30s).
	OpenTimeout time.Duration
	// HalfOpenRequests is how many trial calls a half-open breaker lets
	// through (default 3). That many successes close it; one endpoint
	// failure opens it again for OpenTimeout. With a dead endpoint, at most
	// HalfOpenRequests calls reach it per OpenTimeout.
	HalfOpenRequests int
}

// DefaultSettings returns the defaults: 5 consecutive failures or ≥ 50 %
// failures of ≥ 10 calls in 10 s open the breaker; it stays open 30 s, then
// lets 3 trial calls through.
func DefaultSettings() Settings {
	return Settings{
		ConsecutiveFailures: DefaultConsecutiveFailures,
		FailureRatio:        DefaultFailureRatio,
		MinRequests:         DefaultMinRequests,
		Window:              DefaultWindow,
		OpenTimeout:         DefaultOpenTimeout,
		HalfOpenRequests:    DefaultHalfOpenRequests,
	}
}

// normalized fills in defaults and clamps values to what gobreaker takes.
func (s Settings) normalized() Settings {
	d := DefaultSettings()
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = d.ConsecutiveFailures
	}
	switch {
	case s.FailureRatio == 0:
		s.FailureRatio = d.FailureRatio
	case s.FailureRatio > 1:
		s.FailureRatio = 1
	}
	if s.MinRequests <= 0 {
		s.MinRequests = d.MinRequests
	}
	if s.Window <= 0 {
		s.Window = d.Window
	}
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = d.OpenTimeout
	}
	if s.HalfOpenRequests <= 0 {
		s.HalfOpenRequests = d.HalfOpenRequests
	}
	const maxUint32 = int(^uint32(0))
	s.ConsecutiveFailures = min(s.ConsecutiveFailures, maxUint32)
	s.MinRequests = min(s.MinRequests, maxUint32)
	s.HalfOpenRequests = min(s.HalfOpenRequests, maxUint32)
	return s
}

// Option configures New.
type Option func(*config)

type config struct {
	settings Settings
	onChange func(Change)
	mp       metric.MeterProvider
}

// WithSettings replaces all settings (zero fields take their defaults).
// Options after it change single settings.
func WithSettings(s Settings) Option {
	return func(c *config) { c.settings = s }
}

// WithConsecutiveFailures opens a breaker after n endpoint failures in a row
// (default 5); n < 0 turns the rule off, leaving the failure ratio.
func WithConsecutiveFailures(n int) Option {
	return func(c *config) { c.settings.ConsecutiveFailures = n }
}

// WithFailureRatio opens a breaker when at least ratio of the calls counted
// in the rolling window were endpoint failures, once at least minRequests
// were counted (defaults 0.5, 10, 10s). ratio < 0 turns the rule off.
func WithFailureRatio(ratio float64, minRequests int, window time.Duration) Option {
	return func(c *config) {
		c.settings.FailureRatio = ratio
		c.settings.MinRequests = minRequests
		c.settings.Window = window
	}
}

// WithOpenTimeout sets how long an open breaker refuses every call before
// letting trial calls through (default 30s).
func WithOpenTimeout(d time.Duration) Option {
	return func(c *config) { c.settings.OpenTimeout = d }
}

// WithHalfOpenRequests sets how many trial calls a half-open breaker lets
// through, and how many successes close it (default 3).
func WithHalfOpenRequests(n int) Option {
	return func(c *config) { c.settings.HalfOpenRequests = n }
}

// WithOnStateChange calls f on every state change of every endpoint's
// breaker, in order, one at a time, never with a breaker lock held: f may
// call State and States. f runs on the goroutine of the call that caused or
// noticed the change (inside a KMS call through kms.Client), so it must be
// quick — publish an event asynchronously, do not wait for it. A change
// raised while f runs is delivered after f returns, by the same goroutine.
func WithOnStateChange(f func(Change)) Option {
	return func(c *config) { c.onChange = f }
}

// WithMeterProvider sets where metrics go (default otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}
