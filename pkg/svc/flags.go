// Package svc is the scaffolding every Keyward worker shares: flags with
// environment fallbacks, the NATS connection, telemetry and the health
// server, and a run loop that drains on SIGTERM.
package svc

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Flags is a flag.FlagSet whose flags fall back to environment variables:
// precedence is command line, then environment, then default. Every bad
// value is reported at once, naming the flag and the variable.
type Flags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

// NewFlags returns an empty set for the named command.
func NewFlags(name string, getenv func(string) string, output io.Writer) *Flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &Flags{fs: fs, getenv: getenv}
}

// FlagSet exposes the underlying set.
func (f *Flags) FlagSet() *flag.FlagSet { return f.fs }

func usage(u, env string) string {
	if env == "" {
		return u
	}
	return u + " (env " + env + ")"
}

func (f *Flags) env(env string) (string, bool) {
	if env == "" {
		return "", false
	}
	v := strings.TrimSpace(f.getenv(env))
	return v, v != ""
}

// String defines a string flag.
func (f *Flags) String(p *string, name, env, def, u string) {
	if v, ok := f.env(env); ok {
		def = v
	}
	f.fs.StringVar(p, name, def, usage(u, env))
}

// Int defines an int flag.
func (f *Flags) Int(p *int, name, env string, def int, u string) {
	if v, ok := f.env(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q: not a whole number", env, v))
		} else {
			def = n
		}
	}
	f.fs.IntVar(p, name, def, usage(u, env))
}

// Bool defines a bool flag.
func (f *Flags) Bool(p *bool, name, env string, def bool, u string) {
	if v, ok := f.env(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q: want true or false", env, v))
		} else {
			def = b
		}
	}
	f.fs.BoolVar(p, name, def, usage(u, env))
}

// Duration defines a duration flag ("500ms", "2s", "1m").
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, u string) {
	if v, ok := f.env(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q: want a duration such as 500ms or 2s", env, v))
		} else {
			def = d
		}
	}
	f.fs.DurationVar(p, name, def, usage(u, env))
}

// Size defines a byte-size flag ("256KiB", "64MiB", "5GiB", or bytes).
func (f *Flags) Size(p *int64, name, env string, def int64, u string) {
	if v, ok := f.env(env); ok {
		n, err := ParseSize(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s=%q: %v", env, v, err))
		} else {
			def = n
		}
	}
	*p = def
	f.fs.Func(name, usage(u, env)+fmt.Sprintf(" (default %s)", FormatSize(def)), func(s string) error {
		n, err := ParseSize(s)
		if err != nil {
			return err
		}
		*p = n
		return nil
	})
}

// Parse parses args and returns every problem found, in the environment
// and on the command line.
func (f *Flags) Parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		f.errs = append(f.errs, err)
	}
	return errors.Join(f.errs...)
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// ParseSize parses "256KiB", "64MiB", "1GB" or a plain number of bytes.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || n < 0 || n > (1<<62)/u.mult {
				break
			}
			return n * u.mult, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a size such as 256KiB, 64MiB or 5GiB")
	}
	return n, nil
}

// FormatSize prints n in the largest binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range sizeUnits[:4] {
		if n >= u.mult && n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}
