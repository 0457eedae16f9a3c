package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/tenant"
)

// The changes to a tenant's configuration other than its keys: the service
// is the one writer of KW_TENANTS for them too, so that every change is
// authorised (authorizeCaller) and announced by TenantChanged.

type callerKey struct{}

// withCaller remembers who sent the request, for TenantChanged.ChangedBy.
func withCaller(ctx context.Context, h nats.Header) context.Context {
	by := events.ChangedBy{}
	if c, err := access.CallerFrom(h); err == nil {
		by = events.ChangedBy{Name: c.Name, User: c.User, Account: c.Account, Role: string(c.Role)}
	}
	return context.WithValue(ctx, callerKey{}, by)
}

func callerOf(ctx context.Context) events.ChangedBy {
	by, _ := ctx.Value(callerKey{}).(events.ChangedBy)
	return by
}

// errApplyRaced: a write came between the read of an apply and its write.
var errApplyRaced = errors.New("tenant changed while applying")

// Apply stores req.Tenant (a whole tenant document) as the tenant's
// configuration, as `keyward tenant apply` does: parsed strictly and
// validated (localkms keys only with AllowLocalKeys), then created, or
// updated checked against the revision read just before, so a concurrent
// change is never overwritten: it is refused with CodeConflict instead. A
// key the document names that another tenant has enrolled is refused
// (CodeKeyInUse). A tenant admin may not change the keys, the
// deprovisioning or the re-encryptor's records (CodeNotAuthorized: those go
// through add, rotate and the deprovisioning ops); an operator may.
// TenantChanged (op apply) is published.
func (s *Server) Apply(ctx context.Context, req Request) *Response {
	return tag(s.apply(ctx, req), OpApply)
}

func (s *Server) apply(ctx context.Context, req Request) *Response {
	if err := events.ValidateTenantID(req.TenantID); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	if len(req.Tenant) == 0 {
		return fail(CodeInvalidRequest, "tenant is required: give the tenant document (schemas/tenant.schema.json)")
	}
	catalog := s.catalog
	if catalog == nil {
		catalog = tenant.DefaultServices
	}
	cfg, err := tenant.Parse(req.Tenant, tenant.AllowLocalKeys(s.allowLocal), tenant.WithServiceCatalog(catalog))
	if err != nil {
		return fail(CodeInvalidDocument, "%v", err)
	}
	if cfg.TenantID != req.TenantID {
		return fail(CodeInvalidRequest, "the document is tenant %q's, the request tenant %q's", clip(cfg.TenantID), req.TenantID)
	}
	for _, k := range cfg.Keys {
		key, err := kms.ParseKeyURI(k.URI)
		if err != nil {
			continue // Parse validated it; nothing to compare
		}
		if e := s.checkKeyUnclaimed(ctx, key, req.TenantID); e != nil {
			return &Response{Error: e}
		}
	}
	raced := fmt.Sprintf("tenant %s was changed by someone else while applying; run apply again", req.TenantID)
	tenantAdmin := callerOf(ctx).Role == string(access.RoleTenantAdmin)
	var before *tenant.Config
	calls := 0
	stored, err := s.tenants.Modify(ctx, req.TenantID, func(c *tenant.Config) error {
		// A second call means another write came first: apply replaces
		// the whole document, so it must not silently win.
		if calls++; calls > 1 {
			return errApplyRaced
		}
		before = c.Clone()
		if tenantAdmin {
			if e := keyFieldsKept(req.TenantID, before, cfg); e != nil {
				return e
			}
		}
		*c = *cfg.Clone()
		return nil
	})
	var ee *Error
	switch {
	case errors.As(err, &ee):
		return &Response{Error: ee}
	case errors.Is(err, tenant.ErrNotFound):
		before = nil
		if tenantAdmin {
			if e := keyFieldsKept(req.TenantID, &tenant.Config{TenantID: req.TenantID}, cfg); e != nil {
				return &Response{Error: e}
			}
		}
		stored, err = s.tenants.Create(ctx, cfg)
		if errors.Is(err, tenant.ErrExists) {
			return fail(CodeConflict, "%s", raced)
		}
	case errors.Is(err, tenant.ErrInvalidStored):
		// Not even JSON: only a whole write repairs it, and there is no
		// document before to report.
		before = nil
		if tenantAdmin {
			if e := keyFieldsKept(req.TenantID, &tenant.Config{TenantID: req.TenantID}, cfg); e != nil {
				return &Response{Error: e}
			}
		}
		stored, err = s.tenants.Apply(ctx, cfg)
	}
	switch {
	case errors.Is(err, errApplyRaced), errors.Is(err, tenant.ErrConflict):
		return fail(CodeConflict, "%s", raced)
	case errors.Is(err, events.ErrInvalid):
		return fail(CodeInvalidDocument, "%v", errors.Unwrap(err))
	case err != nil:
		return fail(CodeInternal, "applying tenant %s: %v", req.TenantID, err)
	}
	if s.stored != nil {
		s.stored(ctx, req.TenantID, stored.Revision)
	}
	resp := &Response{Revision: stored.Revision, Tenant: stored}
	resp.Warning = s.publishChanged(ctx, events.TenantOpApply, before, stored)
	s.log.Info("tenant applied", "tenant_id", req.TenantID, "revision", stored.Revision)
	return resp
}

// keyFieldsKept refuses a tenant admin's apply that changes the fields only
// the key operations set: keys (enrolled after a live probe, by add and
// rotate), the deprovisioning and the records the re-encryptor keeps. An
// operator's apply may (it repairs documents).
func keyFieldsKept(tenantID string, before, after *tenant.Config) *Error {
	type keyFields struct {
		Keys            []tenant.Key        `json:"keys"`
		Deprovision     *tenant.Deprovision `json:"deprovision"`
		DeprovisionedAt *time.Time          `json:"deprovisioned_at"`
		CoveredFrom     *time.Time          `json:"covered_from"`
	}
	b, _ := json.Marshal(keyFields{before.Keys, before.Deprovision, before.DeprovisionedAt, before.CoveredFrom})
	a, _ := json.Marshal(keyFields{after.Keys, after.Deprovision, after.DeprovisionedAt, after.CoveredFrom})
	if changed := changedFields(b, a); len(changed) > 0 {
		return &Error{Code: CodeNotAuthorized, Message: fmt.Sprintf("a tenant admin's apply may not change %s: keep them as stored (keyward tenant show --tenant %s --json); enroll, rotate and deprovision keys with keyward tenant key add|rotate and keyward tenant deprovision",
			strings.Join(changed, ", "), tenantID)}
	}
	return nil
}

// errNoChange stops a Modify that would write the same document again.
var errNoChange = errors.New("nothing to change")

// Recipients removes req.Remove from the tenant's email recipients, then
// adds req.Add, matching regardless of case, in one revision-checked
// update. An address to add that is listed already is left as it is
// (Response.Unchanged); one to remove that is not listed refuses the whole
// request (CodeNotRecipient, Response.Absent and Response.Recipients say
// which and what is listed). Nothing is written when nothing changes.
// TenantChanged (op recipients) is published when something did.
func (s *Server) Recipients(ctx context.Context, req Request) *Response {
	return tag(s.recipients(ctx, req), OpRecipients)
}

func (s *Server) recipients(ctx context.Context, req Request) *Response {
	if err := events.ValidateTenantID(req.TenantID); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	if len(req.Add)+len(req.Remove) == 0 {
		return fail(CodeInvalidRequest, "give at least one email address to add or remove")
	}
	var problems []string
	for _, addr := range slices.Concat(req.Add, req.Remove) {
		if p := RecipientProblem(addr); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return fail(CodeInvalidRequest, "%s", strings.Join(problems, "\n"))
	}
	var before *tenant.Config
	var out Response
	stored, err := s.tenants.Modify(ctx, req.TenantID, func(c *tenant.Config) error {
		// Modify may call this again after a concurrent write.
		before = c.Clone()
		out = Response{Revision: c.Revision, Recipients: slices.Clone(c.Recipients)}
		for _, addr := range req.Remove {
			i := indexFold(c.Recipients, addr)
			if i < 0 {
				if indexFold(out.Absent, addr) < 0 {
					out.Absent = append(out.Absent, addr)
				}
				continue
			}
			out.Removed = append(out.Removed, c.Recipients[i])
			c.Recipients = slices.Delete(c.Recipients, i, i+1)
		}
		if len(out.Absent) > 0 {
			return errNotRecipient
		}
		for _, addr := range req.Add {
			if i := indexFold(c.Recipients, addr); i >= 0 {
				if indexFold(out.Unchanged, addr) < 0 && indexFold(out.Added, addr) < 0 {
					out.Unchanged = append(out.Unchanged, c.Recipients[i])
				}
				continue
			}
			c.Recipients = append(c.Recipients, addr)
			out.Added = append(out.Added, addr)
		}
		if len(out.Added)+len(out.Removed) == 0 {
			return errNoChange
		}
		return nil
	})
	switch {
	case errors.Is(err, errNoChange):
		out.NoChange = true
		return &out
	case errors.Is(err, errNotRecipient):
		what := "is not a recipient"
		if len(out.Absent) > 1 {
			what = "are not recipients"
		}
		out.Error = &Error{Code: CodeNotRecipient, Message: fmt.Sprintf("%s %s of tenant %s: nothing was removed", strings.Join(out.Absent, ", "), what, req.TenantID)}
		return &out
	case errors.Is(err, tenant.ErrNotFound):
		return unknownTenant(req.TenantID)
	case errors.Is(err, tenant.ErrConflict):
		return fail(CodeConflict, "tenant %s kept changing while its recipients were updated: run the command again", req.TenantID)
	case err != nil:
		return fail(CodeInternal, "updating the recipients of tenant %s: %v", req.TenantID, err)
	}
	if s.stored != nil {
		s.stored(ctx, req.TenantID, stored.Revision)
	}
	out.Revision, out.Recipients, out.Tenant = stored.Revision, stored.Recipients, stored
	out.Warning = s.publishChanged(ctx, events.TenantOpRecipients, before, stored)
	s.log.Info("tenant recipients changed", "tenant_id", req.TenantID, "added", len(out.Added), "removed", len(out.Removed), "revision", stored.Revision)
	return &out
}

var errNotRecipient = errors.New("not a recipient")

// PhoneSettings sets the tenant's drop_calls to *req.DropCalls in one
// revision-checked update. Setting the value the tenant has changes
// nothing, writes nothing and publishes nothing (Response.NoChange). A
// change publishes PhoneSettingsChanged (Nats-Msg-Id
// phone_settings_changed.<tenant>.<revision>, Response.EventID) and
// TenantChanged (op phone_settings).
func (s *Server) PhoneSettings(ctx context.Context, req Request) *Response {
	return tag(s.phoneSettings(ctx, req), OpPhoneSettings)
}

func (s *Server) phoneSettings(ctx context.Context, req Request) *Response {
	if err := events.ValidateTenantID(req.TenantID); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	if req.DropCalls == nil {
		return fail(CodeInvalidRequest, "drop_calls is required: true drops a covered call that cannot be recorded under the tenant's key, false lets it go on unrecorded")
	}
	want := *req.DropCalls
	var before *tenant.Config
	var previous bool
	var revision uint64
	stored, err := s.tenants.Modify(ctx, req.TenantID, func(c *tenant.Config) error {
		// Modify may call this again after a concurrent write.
		before, previous, revision = c.Clone(), c.Phone.DropCalls, c.Revision
		if previous == want {
			return errNoChange
		}
		c.Phone.DropCalls = want
		return nil
	})
	switch {
	case errors.Is(err, errNoChange):
		return &Response{Revision: revision, Previous: &previous, NoChange: true}
	case errors.Is(err, tenant.ErrNotFound):
		return unknownTenant(req.TenantID)
	case errors.Is(err, tenant.ErrConflict):
		return fail(CodeConflict, "tenant %s kept changing while its phone settings were updated: run the command again", req.TenantID)
	case err != nil:
		return fail(CodeInternal, "updating the phone settings of tenant %s: %v", req.TenantID, err)
	}
	if s.stored != nil {
		s.stored(ctx, req.TenantID, stored.Revision)
	}
	resp := &Response{Revision: stored.Revision, Previous: &previous, Tenant: stored,
		EventID: events.PhoneSettingsChangedMsgID(req.TenantID, stored.Revision)}
	resp.Warning = joinWarnings(
		s.publish(ctx, "phone settings change", stored.Revision, events.Outgoing{
			Subject: events.SubjectPhoneSettingsChanged(req.TenantID),
			MsgID:   resp.EventID,
			Type:    events.TypePhoneSettingsChanged,
			Event:   &events.PhoneSettingsChanged{TenantID: req.TenantID, DropCalls: want, Previous: previous, ChangedAt: s.now().UTC()},
		}),
		s.publishChanged(ctx, events.TenantOpPhoneSettings, before, stored))
	s.log.Info("tenant phone settings changed", "tenant_id", req.TenantID, "drop_calls", want, "revision", stored.Revision)
	return resp
}

func unknownTenant(tenantID string) *Response {
	return fail(CodeUnknownTenant, "tenant %s is not configured", tenantID)
}

// RecipientProblem says why addr is not a valid recipient, exactly as
// tenant.Validate judges a tenant document's recipient (naming the
// address), or "" when it is one.
func RecipientProblem(addr string) string {
	err := tenant.Validate(&tenant.Config{TenantID: "recipient-check", Recipients: []string{addr}})
	var problems []string
	for _, fe := range fieldErrors(err) {
		if fe.Field != "recipients[0]" {
			continue
		}
		p := fe.Problem
		if fe.Fix != "" {
			p += ": " + fe.Fix
		}
		problems = append(problems, p)
	}
	if len(problems) == 0 {
		return ""
	}
	if len(addr) > 80 {
		addr = addr[:80] + "..."
	}
	return fmt.Sprintf("%q %s", addr, strings.Join(problems, "; "))
}

// fieldErrors flattens the *events.FieldError of a joined error.
func fieldErrors(err error) []*events.FieldError {
	var out []*events.FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *events.FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		}
	}
	walk(err)
	return out
}

// indexFold returns the index of the first element of list equal to s
// regardless of case (as tenant validation compares recipients), or -1.
func indexFold(list []string, s string) int {
	for i, x := range list {
		if strings.EqualFold(x, s) {
			return i
		}
	}
	return -1
}

// publishChanged publishes TenantChanged for the change from before (nil:
// a creation) to after, by the request's caller, with Nats-Msg-Id
// tenant_changed.<tenant>.<revision>; a failure is the returned warning.
func (s *Server) publishChanged(ctx context.Context, op string, before, after *tenant.Config) string {
	ev := &events.TenantChanged{TenantID: after.TenantID, Revision: after.Revision, Op: op, At: after.UpdatedAt}
	by := callerOf(ctx)
	ev.ChangedBy = &by
	if ev.At.IsZero() {
		ev.At = s.now().UTC()
	}
	var err error
	if ev.After, err = json.Marshal(after); err == nil && before != nil {
		ev.Before, err = json.Marshal(before)
	}
	if err != nil {
		return fmt.Sprintf("the change is stored (revision %d), but %s could not be encoded: %v", after.Revision, events.TypeTenantChanged, err)
	}
	ev.Fields = changedFields(ev.Before, ev.After)
	return s.publish(ctx, "change", after.Revision, events.Outgoing{
		Subject: events.SubjectTenantChanged(after.TenantID),
		MsgID:   events.TenantChangedMsgID(after.TenantID, after.Revision),
		Type:    events.TypeTenantChanged,
		Event:   ev,
	})
}

// changedFields are the top-level fields that differ between two encoded
// tenant documents (before nil: every field of after), updated_at aside,
// sorted.
func changedFields(before, after []byte) []string {
	var b, a map[string]json.RawMessage
	_ = json.Unmarshal(after, &a)
	if before != nil {
		_ = json.Unmarshal(before, &b)
	}
	fields := []string{}
	for k, v := range a {
		if w, ok := b[k]; (!ok || !bytes.Equal(v, w)) && k != "updated_at" {
			fields = append(fields, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok && k != "updated_at" {
			fields = append(fields, k)
		}
	}
	slices.Sort(fields)
	return fields
}

func joinWarnings(ws ...string) string {
	var out []string
	for _, w := range ws {
		if w != "" {
			out = append(out, w)
		}
	}
	return strings.Join(out, "; ")
}
