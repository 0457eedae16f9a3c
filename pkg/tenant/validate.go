package tenant

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
)

// Limits of the document's strings, in characters (Unicode code points, as
// JSON Schema's maxLength counts them).
const (
	MaxDisplayNameLen = 256
	MaxUserIDLen      = 256
	MaxRecipientLen   = 254 // RFC 5321 path limit less the angle brackets
)

type validateOptions struct {
	allowLocal bool
	catalog    []string
}

// ValidateOption adjusts Validate and Parse.
type ValidateOption func(*validateOptions)

// AllowLocalKeys allows localkms:// key URIs as customer keys. They hold
// platform keys in files and are for dev mode and tests only.
func AllowLocalKeys(allow bool) ValidateOption {
	return func(o *validateOptions) { o.allowLocal = allow }
}

// WithServiceCatalog makes Validate refuse services the platform does not
// offer. Without it (or with an empty list) any well-formed service name is
// accepted. DefaultServices is the default catalog of a platform.
func WithServiceCatalog(services []string) ValidateOption {
	return func(o *validateOptions) { o.catalog = slices.Clone(services) }
}

func newValidateOptions(opts []ValidateOption) validateOptions {
	var o validateOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// Validate checks c and returns every problem at once: an errors.Join of
// *events.FieldError, each naming the JSON path of the field (e.g.
// "keys[1].uri"), what is wrong and how to fix it. Every error matches
// events.ErrInvalid. Revision and UpdatedAt are not checked.
func Validate(c *Config, opts ...ValidateOption) error {
	if c == nil {
		return &events.FieldError{Field: "document", Problem: "is missing", Fix: "pass a tenant configuration"}
	}
	o := newValidateOptions(opts)
	v := &validator{}
	if err := events.ValidateTenantID(c.TenantID); err != nil {
		v.errs = append(v.errs, err)
	}
	if n := utf8.RuneCountInString(c.DisplayName); n > MaxDisplayNameLen {
		v.add("display_name", fmt.Sprintf("is %d characters long, more than %d", n, MaxDisplayNameLen), "shorten it")
	}
	if strings.ContainsFunc(c.DisplayName, unicode.IsControl) {
		v.add("display_name", "contains a control character", "remove line breaks, tabs and other control characters")
	}
	v.keys(c.Keys, o)
	v.deprovision(c)
	v.list("services", c.Services, func(field, s string) {
		if err := events.ValidateService(s); err != nil {
			var fe *events.FieldError
			if errors.As(err, &fe) {
				v.add(field, fe.Problem, fe.Fix)
				return
			}
			v.add(field, err.Error(), "")
			return
		}
		if len(o.catalog) > 0 && !slices.Contains(o.catalog, s) {
			fix := "use one of " + strings.Join(o.catalog, ", ") + `, or "*" for all`
			if near := closest(s, o.catalog); near != "" {
				fix = fmt.Sprintf("did you mean %q? ", near) + fix
			}
			v.add(field, fmt.Sprintf("%q is not a service this platform offers", s), fix)
		}
	})
	v.list("licensed_users", c.LicensedUsers, func(field, u string) {
		if n := utf8.RuneCountInString(u); n > MaxUserIDLen {
			v.add(field, fmt.Sprintf("is %d characters long, more than %d", n, MaxUserIDLen), "use the user id the platform assigns")
		}
		if strings.ContainsFunc(u, badUserIDRune) {
			v.add(field, "contains whitespace or a control character", "use the user id the platform assigns")
		}
	})
	v.recipients(c.Recipients)
	v.deniedPurposes(c.DeniedPurposes)
	switch c.FallbackOn {
	case "", FallbackOnOutage, FallbackOnAny:
	default:
		v.add("fallback_on", fmt.Sprintf("%q is not a fallback choice", clip(string(c.FallbackOn))),
			`use "outage" (fall back only while the key is unreachable; the default) or "any" (also when it is revoked)`)
	}
	switch h := c.HoldWindow.Std(); {
	case h < 0:
		v.add("hold_window", "is negative", `use "0s" to decide at once, or a duration up to `+MaxHoldWindow.String())
	case h > MaxHoldWindow:
		v.add("hold_window", fmt.Sprintf("is %s, more than %s", h, MaxHoldWindow), "shorten it: a longer outage should fall back or reject, not hold assets")
	}
	return errors.Join(v.errs...)
}

// badUserIDRune reports the runes a licensed user id must not contain. The
// schema's user id pattern is the same set, written out.
func badUserIDRune(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

type validator struct{ errs []error }

func (v *validator) add(field, problem, fix string) {
	v.errs = append(v.errs, &events.FieldError{Field: field, Problem: problem, Fix: fix})
}

func (v *validator) keys(keys []Key, o validateOptions) {
	if len(keys) > MaxKeys {
		v.add("keys", fmt.Sprintf("has %d keys, more than %d", len(keys), MaxKeys), "remove retired keys")
	}
	seen := make(map[string]int, len(keys))
	primary := -1
	for i, k := range keys {
		field := fmt.Sprintf("keys[%d]", i)
		switch {
		case k.URI == "":
			v.add(field+".uri", "is required", "name the key, e.g. awskms://arn:aws:kms:<region>:<account>:key/<key id>")
		default:
			u, err := kms.ParseKeyURI(k.URI)
			if err != nil {
				v.add(field+".uri", "is not a valid key URI: "+err.Error(), "")
				break
			}
			if u.Scheme == kms.SchemeLocal && !o.allowLocal {
				v.add(field+".uri", "is a localkms:// key, which holds platform keys in dev mode and tests only",
					"enroll an awskms://, ocikms:// or azurekv:// key")
			}
			canon := u.String()
			if canon != k.URI {
				v.add(field+".uri", "is not in canonical form", "write it as "+canon)
			}
			if j, dup := seen[canon]; dup {
				v.add(field+".uri", fmt.Sprintf("names the same key as keys[%d]", j), "remove one of them")
			} else {
				seen[canon] = i
			}
		}
		switch {
		case k.Role == "":
			v.add(field+".role", "is required", `use "primary", "replica" or "retiring"`)
		case !k.Role.Valid():
			v.add(field+".role", fmt.Sprintf("%q is not a key role", clip(string(k.Role))), `use "primary", "replica" or "retiring"`)
		case k.Role == RolePrimary && primary >= 0:
			v.add(field+".role", fmt.Sprintf("makes a second primary key (keys[%d] is the primary)", primary),
				`keep exactly one primary; mark the old key "retiring"`)
		case k.Role == RolePrimary:
			primary = i
		}
		if k.EnrolledAt.IsZero() {
			v.add(field+".enrolled_at", "is required",
				"set it to when the key was enrolled (RFC 3339); assets created before the earliest enrolled_at stay on the platform key")
		}
	}
	if len(keys) > 0 && primary < 0 {
		v.add("keys", "has no primary key", `mark exactly one key "role": "primary"`)
	}
}

// deprovision checks the scheduled deprovisioning and its completion: both
// times of a schedule are required, and a deprovisioned tenant has no keys.
func (v *validator) deprovision(c *Config) {
	if d := c.Deprovision; d != nil {
		if d.At.IsZero() {
			v.add("deprovision.at", "is required",
				`give the time the deprovisioning starts (RFC 3339), e.g. "2026-12-31T00:00:00Z"; or remove "deprovision"`)
		}
		if d.ScheduledAt.IsZero() {
			v.add("deprovision.scheduled_at", "is required", "set it to when the deprovisioning was scheduled (RFC 3339)")
		}
	}
	if at := c.DeprovisionedAt; at != nil {
		if at.IsZero() {
			v.add("deprovisioned_at", "is the zero time", "set it to when the deprovisioning completed, or remove it")
		}
		if len(c.Keys) > 0 {
			v.add("keys", fmt.Sprintf("has %d keys but the tenant was deprovisioned", len(c.Keys)),
				`a deprovisioned tenant has no keys: remove "deprovisioned_at" (and "deprovision") to enroll keys again`)
		}
	}
}

// list checks a list that is either ["*"] or distinct names, each checked by
// check.
func (v *validator) list(name string, items []string, check func(field, item string)) {
	if len(items) > 1 && slices.Contains(items, All) {
		v.add(name, `mixes "*" with names`, `use ["*"] alone for all, or list the names`)
	}
	seen := make(map[string]int, len(items))
	for i, s := range items {
		field := fmt.Sprintf("%s[%d]", name, i)
		switch {
		case s == "":
			v.add(field, "is empty", "remove it")
			continue
		case s == All:
			continue
		}
		if j, dup := seen[s]; dup {
			v.add(field, fmt.Sprintf("repeats %s[%d]", name, j), "remove it")
			continue
		}
		seen[s] = i
		check(field, s)
	}
}

func (v *validator) recipients(list []string) {
	seen := make(map[string]int, len(list))
	for i, s := range list {
		field := fmt.Sprintf("recipients[%d]", i)
		if s == "" {
			v.add(field, "is empty", "remove it")
			continue
		}
		if n := utf8.RuneCountInString(s); n > MaxRecipientLen {
			v.add(field, fmt.Sprintf("is %d characters long, more than %d", n, MaxRecipientLen), "use a shorter address")
			continue
		}
		a, err := mail.ParseAddress(s)
		if err != nil {
			v.add(field, "is not an email address", "write it as name@example.com")
			continue
		}
		if a.Name != "" || a.Address != s {
			v.add(field, "is not a bare email address", "write only the address, without a display name, quotes or angle brackets")
			continue
		}
		low := strings.ToLower(s)
		if j, dup := seen[low]; dup {
			v.add(field, fmt.Sprintf("repeats recipients[%d]", j), "remove it")
			continue
		}
		seen[low] = i
	}
}

// deniedPurposes checks the denied purposes: each a member of
// events.Purposes, none repeated.
func (v *validator) deniedPurposes(list []string) {
	seen := make(map[string]int, len(list))
	for i, p := range list {
		field := fmt.Sprintf("denied_purposes[%d]", i)
		if err := events.ValidatePurpose(p); err != nil {
			var fe *events.FieldError
			if errors.As(err, &fe) {
				v.add(field, fe.Problem, fe.Fix)
			} else {
				v.add(field, err.Error(), "")
			}
			continue
		}
		if j, dup := seen[p]; dup {
			v.add(field, fmt.Sprintf("repeats denied_purposes[%d]", j), "remove it")
			continue
		}
		seen[p] = i
	}
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// closest returns the entry of names nearest to s by edit distance (the
// one unknown document fields use), when it is near enough to be a typo:
// at most a third of its length, at least 2; else "".
func closest(s string, names []string) string {
	best, bestD := "", -1
	for _, n := range names {
		if d := editDistance(s, n); bestD < 0 || d < bestD {
			best, bestD = n, d
		}
	}
	if bestD < 0 || bestD > max(2, len(best)/3) {
		return ""
	}
	return best
}
