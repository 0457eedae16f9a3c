package enroll

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/tenant"
)

// publishAttempts bounds the publishes of one lifecycle event; the change
// is stored before, so a failure becomes Response.Warning.
const publishAttempts = 3

// Rotate makes req.KeyURI the tenant's primary key. The key passes the
// checks and the live round trip of an enrollment; then, in one
// revision-checked update of KW_TENANTS, the old primary and its replicas
// become retiring (keeping their enrollment times) and the new key becomes
// the primary, enrolled now. RotationStarted is published on KW_LIFECYCLE
// with Nats-Msg-Id rotation_started.<tenant>.<revision>.
//
// Conflicts (CodeConflict): the tenant has no primary; the key is already
// enrolled in any role; a deprovisioning is scheduled; the tenant has
// tenant.MaxKeys keys.
func (s *Server) Rotate(ctx context.Context, req RotateRequest) *Response {
	return tag(s.rotate(ctx, req), OpRotate)
}

func (s *Server) rotate(ctx context.Context, req RotateRequest) *Response {
	if err := events.ValidateTenantID(req.TenantID); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	key, ferr := s.checkKeyURI(req.KeyURI)
	if ferr != nil {
		return &Response{Error: ferr}
	}
	uri := key.String()
	cur, err := s.tenants.Get(ctx, req.TenantID)
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		return &Response{Error: noPrimary(req.TenantID)}
	case err != nil:
		return fail(CodeInternal, "reading tenant %s: %v", req.TenantID, err)
	}
	if e := checkRotate(cur, key, s.now()); e != nil {
		return &Response{Error: e}
	}
	if e := s.checkKeyUnclaimed(ctx, key, req.TenantID); e != nil {
		return &Response{Error: e}
	}

	probe, perr := Probe(ctx, s.kms, key, req.TenantID, s.platform)
	if perr != nil {
		s.log.Info("rotation refused", "tenant_id", req.TenantID, "key_uri", uri, "code", perr.Code, "op", perr.Op)
		return &Response{Error: perr}
	}

	now := s.now().UTC()
	enrolled := tenant.Key{URI: uri, Role: tenant.RolePrimary, EnrolledAt: now.Truncate(time.Second)}
	var from string
	var retiring []string
	var before *tenant.Config
	stored, err := s.tenants.Modify(ctx, req.TenantID, func(c *tenant.Config) error {
		before = c.Clone()
		if e := checkRotate(c, key, now); e != nil {
			return e
		}
		from, retiring = "", nil
		// The old primary first, then its replicas: the same key material,
		// which must not encrypt new assets once the primary has changed.
		for _, role := range []tenant.KeyRole{tenant.RolePrimary, tenant.RoleReplica} {
			for i := range c.Keys {
				if c.Keys[i].Role != role {
					continue
				}
				if role == tenant.RolePrimary {
					from = c.Keys[i].URI
				}
				c.Keys[i].Role = tenant.RoleRetiring
				retiring = append(retiring, c.Keys[i].URI)
			}
		}
		c.Keys = append(c.Keys, enrolled)
		return nil
	})
	if r := storeFailed(err, "rotating the key of tenant "+req.TenantID); r != nil {
		return r
	}
	if s.stored != nil {
		s.stored(ctx, req.TenantID, stored.Revision)
	}
	resp := &Response{
		Key: &enrolled, Revision: stored.Revision, KeyVersion: probe.KeyVersion,
		Identities: s.platform.Identities(key), Probe: probe.Millis, Retiring: retiring,
	}
	ev := &events.RotationStarted{TenantID: req.TenantID, FromKeyURI: from, ToKeyURI: uri, ToKeyVersion: probe.KeyVersion, StartedAt: now}
	resp.Warning = s.publish(ctx, "rotation", stored.Revision, events.Outgoing{
		Subject: events.SubjectRotationStarted(req.TenantID),
		MsgID:   lifecycleMsgID("rotation_started", req.TenantID, stored.Revision),
		Type:    events.TypeRotationStarted, Event: ev,
	})
	resp.Warning = joinWarnings(resp.Warning, s.publishChanged(ctx, events.TenantOpRotation, before, stored))
	s.log.Info("key rotation started", "tenant_id", req.TenantID, "from_key_uri", from, "to_key_uri", uri,
		"key_version", probe.KeyVersion, "retiring", retiring, "revision", stored.Revision)
	return resp
}

// checkRotate says whether c allows a rotation to key at now.
func checkRotate(c *tenant.Config, key kms.KeyURI, now time.Time) *Error {
	primary, ok := c.PrimaryKey()
	if !ok {
		return noPrimary(c.TenantID)
	}
	uri := key.String()
	for _, k := range c.Keys {
		if k.URI == uri {
			msg := fmt.Sprintf("%s is already enrolled for tenant %s (as %s): rotate to a key that is not enrolled", uri, c.TenantID, k.Role)
			if k.Role == tenant.RolePrimary {
				msg = fmt.Sprintf("%s is already the primary key of tenant %s: there is nothing to rotate", uri, c.TenantID)
			}
			return &Error{Code: CodeConflict, Message: msg}
		}
	}
	if d := c.Deprovision; d != nil {
		if !now.Before(d.At) {
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s is being deprovisioned (since %s): its keys cannot be rotated; the deprovisioning completes with DeprovisionCompleted", c.TenantID, stamp(d.At))}
		}
		return &Error{Code: CodeConflict, Message: fmt.Sprintf("a deprovisioning of tenant %s is scheduled for %s: cancel it first (keyward tenant deprovision cancel --tenant %s), then rotate", c.TenantID, stamp(d.At), c.TenantID)}
	}
	if len(c.Keys) >= tenant.MaxKeys {
		return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s has %d keys, the most it may have (%d); %s is the primary: wait until the rotations in progress complete (RotationCompleted) and their retired keys are removed", c.TenantID, len(c.Keys), tenant.MaxKeys, primary.URI)}
	}
	return nil
}

func noPrimary(tenantID string) *Error {
	return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s has no primary key to rotate from: enroll one first (keyward tenant key add --tenant %s --uri <key URI>)", tenantID, tenantID)}
}

// checkNotDeprovisioning refuses new keys for a tenant whose deprovisioning
// has started and not completed.
func checkNotDeprovisioning(c *tenant.Config, now time.Time) *Error {
	if c == nil || c.Deprovision == nil || c.DeprovisionedAt != nil || now.Before(c.Deprovision.At) {
		return nil
	}
	return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s is being deprovisioned (since %s): no key can be enrolled until it completes with DeprovisionCompleted", c.TenantID, stamp(c.Deprovision.At))}
}

// ScheduleDeprovision schedules the tenant's deprovisioning at req.At (the
// zero time or a time in the past: now, and it starts at once), or moves a
// schedule whose time has not come. From At on, assets created at or after
// At are decided to the platform key (coverage deprovisioned) and the
// re-encryptor moves every stored asset there. DeprovisionScheduled is
// published with Nats-Msg-Id deprovision_scheduled.<tenant>.<revision>.
//
// Conflicts (CodeConflict): the tenant has no configuration or no keys, it
// was deprovisioned already, or its deprovisioning has started.
func (s *Server) ScheduleDeprovision(ctx context.Context, req ScheduleDeprovisionRequest) *Response {
	return tag(s.scheduleDeprovision(ctx, req), OpDeprovisionSchedule)
}

func (s *Server) scheduleDeprovision(ctx context.Context, req ScheduleDeprovisionRequest) *Response {
	if err := events.ValidateTenantID(req.TenantID); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	now := s.now().UTC()
	at := req.At.UTC()
	if at.IsZero() || at.Before(now) {
		at = now
	}
	var sched tenant.Deprovision
	var before *tenant.Config
	stored, err := s.tenants.Modify(ctx, req.TenantID, func(c *tenant.Config) error {
		before = c.Clone()
		switch d := c.Deprovision; {
		case c.DeprovisionedAt != nil:
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s was deprovisioned at %s: there is nothing left to deprovision", c.TenantID, stamp(*c.DeprovisionedAt))}
		case len(c.Keys) == 0:
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s has no keys: there is nothing to deprovision (its assets are under the platform key)", c.TenantID)}
		case d != nil && !now.Before(d.At):
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("the deprovisioning of tenant %s started at %s; it cannot be rescheduled; it completes with DeprovisionCompleted", c.TenantID, stamp(d.At))}
		}
		sched = tenant.Deprovision{At: at, ScheduledAt: now}
		c.Deprovision = &sched
		return nil
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return fail(CodeConflict, "tenant %s has no configuration: there is nothing to deprovision", req.TenantID)
	}
	if r := storeFailed(err, "scheduling the deprovisioning of tenant "+req.TenantID); r != nil {
		return r
	}
	if s.stored != nil {
		s.stored(ctx, req.TenantID, stored.Revision)
	}
	resp := &Response{Revision: stored.Revision, Deprovision: &sched}
	resp.Warning = s.publish(ctx, "deprovisioning schedule", stored.Revision, events.Outgoing{
		Subject: events.SubjectDeprovisionScheduled(req.TenantID),
		MsgID:   lifecycleMsgID("deprovision_scheduled", req.TenantID, stored.Revision),
		Type:    events.TypeDeprovisionScheduled,
		Event:   &events.DeprovisionScheduled{TenantID: req.TenantID, At: sched.At, ScheduledAt: sched.ScheduledAt},
	})
	resp.Warning = joinWarnings(resp.Warning, s.publishChanged(ctx, events.TenantOpDeprovisionScheduled, before, stored))
	s.log.Info("deprovisioning scheduled", "tenant_id", req.TenantID, "at", sched.At, "revision", stored.Revision)
	return resp
}

// CancelDeprovision cancels the tenant's scheduled deprovisioning before
// its time. DeprovisionCancelled is published with Nats-Msg-Id
// deprovision_cancelled.<tenant>.<revision>.
//
// Conflicts (CodeConflict): nothing is scheduled, or the deprovisioning has
// started (it cannot be cancelled; it completes with DeprovisionCompleted).
func (s *Server) CancelDeprovision(ctx context.Context, tenantID string) *Response {
	return tag(s.cancelDeprovision(ctx, tenantID), OpDeprovisionCancel)
}

func (s *Server) cancelDeprovision(ctx context.Context, tenantID string) *Response {
	if err := events.ValidateTenantID(tenantID); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	now := s.now().UTC()
	var was tenant.Deprovision
	var before *tenant.Config
	stored, err := s.tenants.Modify(ctx, tenantID, func(c *tenant.Config) error {
		before = c.Clone()
		d := c.Deprovision
		switch {
		case d == nil && c.DeprovisionedAt != nil:
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s was deprovisioned at %s: a completed deprovisioning cannot be cancelled; enroll a key to protect new assets again (keyward tenant key add)", c.TenantID, stamp(*c.DeprovisionedAt))}
		case d == nil:
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("no deprovisioning is scheduled for tenant %s: there is nothing to cancel", c.TenantID)}
		case !now.Before(d.At):
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("deprovisioning started at %s; it cannot be cancelled; it completes with DeprovisionCompleted", stamp(d.At))}
		}
		was = *d
		c.Deprovision = nil
		return nil
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return fail(CodeConflict, "tenant %s has no configuration: no deprovisioning is scheduled", tenantID)
	}
	if r := storeFailed(err, "cancelling the deprovisioning of tenant "+tenantID); r != nil {
		return r
	}
	if s.stored != nil {
		s.stored(ctx, tenantID, stored.Revision)
	}
	resp := &Response{Revision: stored.Revision, Deprovision: &was}
	resp.Warning = s.publish(ctx, "cancellation", stored.Revision, events.Outgoing{
		Subject: events.SubjectDeprovisionCancelled(tenantID),
		MsgID:   lifecycleMsgID("deprovision_cancelled", tenantID, stored.Revision),
		Type:    events.TypeDeprovisionCancelled,
		Event:   &events.DeprovisionCancelled{TenantID: tenantID, At: was.At, CancelledAt: now},
	})
	resp.Warning = joinWarnings(resp.Warning, s.publishChanged(ctx, events.TenantOpDeprovisionCancelled, before, stored))
	s.log.Info("deprovisioning cancelled", "tenant_id", tenantID, "at", was.At, "revision", stored.Revision)
	return resp
}

// storeFailed turns the error of a Modify into a response: a refusal from
// the change function as it is, anything else as CodeInternal. nil when err
// is nil.
func storeFailed(err error, doing string) *Response {
	var ee *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return &Response{Error: ee}
	case errors.Is(err, tenant.ErrNotFound):
		return &Response{Error: &Error{Code: CodeConflict, Message: doing + ": the tenant has no configuration"}}
	}
	return fail(CodeInternal, "%s: %v", doing, err)
}

// publish publishes a lifecycle event, retrying a few times. The change is
// stored already, so a failure is returned as a warning, not an error.
func (s *Server) publish(ctx context.Context, what string, revision uint64, o events.Outgoing) string {
	var err error
	if s.pub == nil {
		err = errors.New("no JetStream context")
	}
	for attempt := 1; s.pub != nil && attempt <= publishAttempts; attempt++ {
		if _, err = s.pub.Publish(ctx, o); err == nil {
			return ""
		}
		if attempt == publishAttempts {
			break
		}
		t := time.NewTimer(time.Duration(attempt) * 200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			attempt = publishAttempts
		case <-t.C:
		}
	}
	s.log.Warn("lifecycle event not published", "subject", o.Subject, "msg_id", o.MsgID, "error", err)
	return fmt.Sprintf("the %s is stored (revision %d), but %s could not be published on %s: %v; workers follow the stored configuration, only the notification is missing",
		what, revision, o.Type, events.StreamLifecycle, err)
}

// lifecycleMsgID is the Nats-Msg-Id of a lifecycle event of the enrollment
// service: <kind>.<tenant>.<KW_TENANTS revision>.
func lifecycleMsgID(kind, tenantID string, revision uint64) string {
	return kind + "." + tenantID + "." + strconv.FormatUint(revision, 10)
}

// tag marks the refusal in r as one of op, for Error's wording.
func tag(r *Response, op string) *Response {
	if r != nil && r.Error != nil {
		r.Error.request = op
	}
	return r
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
