package telemetry

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidLogLevel is returned (inside an *EnvError naming
	// KEYWARD_LOG_LEVEL) by ParseLevel for a level it does not know.
	ErrInvalidLogLevel = errors.New("invalid log level")

	// ErrInvalidConfig is wrapped by every error Setup returns for a bad
	// Config or a bad OTEL_* variable. The individual problems are
	// *EnvError values joined with errors.Join.
	ErrInvalidConfig = errors.New("invalid telemetry configuration")
)

// EnvError reports a bad value of one configuration variable. Name is the
// variable (for example "OTEL_EXPORTER_OTLP_TIMEOUT"); the value itself is
// only repeated in Err when it cannot be a secret.
type EnvError struct {
	Name string
	Err  error
}

func (e *EnvError) Error() string { return fmt.Sprintf("%s: %v", e.Name, e.Err) }

// Unwrap returns the underlying problem.
func (e *EnvError) Unwrap() error { return e.Err }

func envErr(name, format string, args ...any) *EnvError {
	return &EnvError{Name: name, Err: fmt.Errorf(format, args...)}
}
