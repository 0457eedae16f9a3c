package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/rpc"
	"github.com/keyward/keyward/pkg/tenant"
)

const (
	// QueueGroup is the queue group of every enrollment server.
	QueueGroup = "keyward-enroll"
	// ServiceName is the enrollment service's NATS micro service name
	// (nats micro info keyward-enroll).
	ServiceName = "keyward-enroll"
	// DefaultConcurrency bounds the enrollments one server runs at once
	// (each makes KMS calls of up to its timeout).
	DefaultConcurrency = 16
)

// Server answers enrollment requests.
type Server struct {
	nc          *nats.Conn
	tenants     *tenant.Store
	kms         kms.Provider
	platform    platform.Config
	allowLocal  bool
	authorize   bool
	catalog     []string
	log         *slog.Logger
	now         func() time.Time
	timeout     time.Duration
	concurrency int
	stored      func(ctx context.Context, tenantID string, revision uint64)
	// pub publishes the lifecycle events (KW_LIFECYCLE).
	pub *events.Publisher

	mu  sync.Mutex
	srv *rpc.Server
}

// Option tunes a Server.
type Option func(*Server)

// Authorize makes the server accept a change only from a caller NATS
// authenticated (the server-set Nats-Request-Info of the shared service
// import): an operator, or a tenant admin whose credential names the
// request's tenant. Everything else is refused with CodeNotAuthorized.
// Off only where NATS runs without authentication (tests, keyward dev
// --no-auth).
func Authorize(on bool) Option { return func(s *Server) { s.authorize = on } }

// WithServiceCatalog sets the services a tenant document may select (apply
// refuses others, with a "did you mean"); default tenant.DefaultServices.
func WithServiceCatalog(services []string) Option {
	return func(s *Server) { s.catalog = services }
}

// AllowLocalKeys accepts localkms:// customer keys (keyward dev, tests).
func AllowLocalKeys(allow bool) Option { return func(s *Server) { s.allowLocal = allow } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithClock sets the clock of enrollment times (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithConcurrency bounds the enrollments the server runs at once (default
// DefaultConcurrency). When that many are running, the next request waits
// for one to finish.
func WithConcurrency(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.concurrency = n
		}
	}
}

// WithStored sets a function called after a key is stored and before the
// reply: the encryptor waits there until its own tenant cache has the new
// revision, so an asset published right after `keyward tenant key add`
// returns is decided with the key.
func WithStored(fn func(ctx context.Context, tenantID string, revision uint64)) Option {
	return func(s *Server) { s.stored = fn }
}

// NewServer returns an enrollment server; Start serves it on nc. js is the
// JetStream context the lifecycle events are published with (KW_LIFECYCLE);
// it may come from another connection than nc. Without one (nil) changes
// are still stored and each reply carries a warning that the event was not
// published.
func NewServer(nc *nats.Conn, js jetstream.JetStream, tenants *tenant.Store, p kms.Provider, plat platform.Config, opts ...Option) *Server {
	s := &Server{nc: nc, tenants: tenants, kms: p, platform: plat, log: slog.Default(), now: time.Now, timeout: 30 * time.Second, concurrency: DefaultConcurrency}
	for _, o := range opts {
		o(s)
	}
	if js != nil {
		s.pub = events.NewPublisher(js, "enroll")
	} else {
		s.log.Warn("enrollment service cannot publish lifecycle events: no JetStream context")
	}
	return s
}

// Start adds the micro service keyward-enroll on the server's connection:
// endpoint "enroll" on keyward.key.enroll.* in the enrollment queue group,
// at most the configured concurrency of enrollments at once.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("enroll: already started")
	}
	srv, err := rpc.Start(s.nc, rpc.Config{
		Name:        ServiceName,
		Description: "Keyward enrollment: proves a tenant's customer key works, then enrolls, rotates or deprovisions it",
		QueueGroup:  QueueGroup,
		Endpoint:    "enroll",
		Subject:     events.SubjectKeyEnrollAll,
		Concurrency: s.concurrency,
		Timeout:     s.timeout,
		Tracer:      otel.Tracer("github.com/keyward/keyward/pkg/enroll"),
		SpanSubject: "keyward.key.enroll.{tenant}",
		Logger:      s.log,
		Handler:     s.serve,
	})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	s.srv = srv
	return nil
}

// Stop stops the service and waits until every request it received is
// answered (enrollments in flight finish).
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			s.log.Warn("stopping the enrollment service", "error", err)
		}
	}
}

// serve answers one request: the Response, with micro's error headers
// carrying the refusal's code when it is one.
func (s *Server) serve(ctx context.Context, r *rpc.Request) {
	resp := s.handle(ctx, r)
	if resp.Error != nil {
		_ = r.RespondError(resp.Error.Code, resp.Error.Message, resp)
		return
	}
	_ = r.Respond(resp)
}

// handle decides one request. r's headers are the caller's (e.g. the
// server-set Nats-Request-Info).
func (s *Server) handle(ctx context.Context, r *rpc.Request) *Response {
	subjectTenant, err := events.TenantFromSubject(r.Subject())
	if err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	var req Request
	if err := events.Decode("EnrollRequest", r.Data(), &req); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	if req.TenantID != subjectTenant {
		return fail(CodeInvalidRequest, "request for tenant %q sent on the subject of tenant %q", req.TenantID, subjectTenant)
	}
	if resp := s.authorizeCaller(r.Header(), subjectTenant); resp != nil {
		return resp
	}
	ctx = withCaller(ctx, r.Header())
	switch req.Op {
	case "", OpAdd:
		return s.Enroll(ctx, req)
	case OpRotate:
		return s.Rotate(ctx, RotateRequest{TenantID: req.TenantID, KeyURI: req.KeyURI})
	case OpDeprovisionSchedule:
		if req.At == nil {
			return fail(CodeInvalidRequest, "at is required: give the time the deprovisioning starts (RFC 3339), or now")
		}
		return s.ScheduleDeprovision(ctx, ScheduleDeprovisionRequest{TenantID: req.TenantID, At: *req.At})
	case OpDeprovisionCancel:
		return s.CancelDeprovision(ctx, req.TenantID)
	case OpApply:
		return s.Apply(ctx, req)
	case OpRecipients:
		return s.Recipients(ctx, req)
	case OpPhoneSettings:
		return s.PhoneSettings(ctx, req)
	}
	return fail(CodeInvalidRequest, "op %q is not an operation of the enrollment service: use add, rotate, deprovision_schedule, deprovision_cancel, apply, recipients or phone_settings", clip(req.Op))
}

// authorizeCaller refuses a request whose caller may not change tenantID:
// only an operator, or a tenant admin of that very tenant, may.
func (s *Server) authorizeCaller(h nats.Header, tenantID string) *Response {
	if !s.authorize {
		return nil
	}
	caller, err := access.CallerFrom(h)
	if err != nil {
		return fail(CodeNotAuthorized, "the request carries no caller identity (%v): only an operator or an admin of tenant %s may change it", err, tenantID)
	}
	switch {
	case caller.Role == access.RoleOperator:
		return nil
	case caller.Role == access.RoleTenantAdmin && caller.Tenant == tenantID:
		return nil
	case caller.Role == access.RoleTenantAdmin:
		return fail(CodeNotAuthorized, "%s is an admin of tenant %s, not of %s", caller, caller.Tenant, tenantID)
	}
	return fail(CodeNotAuthorized, "%s may not change tenants: only an operator or an admin of tenant %s may", caller, tenantID)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func fail(code, format string, args ...any) *Response {
	return &Response{Error: &Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// Enroll validates, probes and stores one key. It is what the request-reply
// handler runs, exported for in-process use. Once the key is stored,
// KeyEnrolled is published on KW_LIFECYCLE with Nats-Msg-Id
// key_enrolled.<tenant>.<revision> (retried a few times; a failure is
// Response.Warning, the key stays enrolled).
func (s *Server) Enroll(ctx context.Context, req Request) *Response {
	if err := events.ValidateTenantID(req.TenantID); err != nil {
		return fail(CodeInvalidRequest, "%v", err)
	}
	role := req.Role
	if role == "" {
		role = tenant.RolePrimary
	}
	if role != tenant.RolePrimary && role != tenant.RoleReplica {
		return fail(CodeInvalidRequest, "role %q: enroll a key as primary or replica (retiring keys come from rotation)", role)
	}
	key, ferr := s.checkKeyURI(req.KeyURI)
	if ferr != nil {
		return &Response{Error: ferr}
	}
	uri := key.String()

	cur, err := s.tenants.Get(ctx, req.TenantID)
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		cur = nil
	case err != nil:
		return fail(CodeInternal, "reading tenant %s: %v", req.TenantID, err)
	}
	if e := checkNotDeprovisioning(cur, s.now()); e != nil {
		return &Response{Error: e}
	}
	if e := checkRole(cur, key, role); e != nil {
		return &Response{Error: e}
	}
	if e := s.checkKeyUnclaimed(ctx, key, req.TenantID); e != nil {
		return &Response{Error: e}
	}

	probe, perr := Probe(ctx, s.kms, key, req.TenantID, s.platform)
	if perr != nil {
		s.log.Info("enrollment refused", "tenant_id", req.TenantID, "key_uri", uri, "code", perr.Code, "op", perr.Op)
		return &Response{Error: perr}
	}

	enrolled := tenant.Key{URI: uri, Role: role, EnrolledAt: s.now().UTC().Truncate(time.Second)}
	var stored, before *tenant.Config
	if cur == nil {
		stored, err = s.tenants.Create(ctx, &tenant.Config{
			TenantID: req.TenantID, Keys: []tenant.Key{enrolled},
			Services: []string{tenant.All}, LicensedUsers: []string{tenant.All},
		})
	} else {
		stored, err = s.tenants.Modify(ctx, req.TenantID, func(c *tenant.Config) error {
			before = c.Clone()
			if e := checkNotDeprovisioning(c, s.now()); e != nil {
				return e
			}
			if e := checkRole(c, key, role); e != nil {
				return e
			}
			if c.DeprovisionedAt != nil {
				// Enrolling again after a completed deprovisioning starts
				// coverage afresh.
				c.DeprovisionedAt, c.Deprovision = nil, nil
			}
			c.Keys = append(c.Keys, enrolled)
			return nil
		})
	}
	var ee *Error
	switch {
	case errors.As(err, &ee):
		return &Response{Error: ee}
	case err != nil:
		return fail(CodeInternal, "storing the key of tenant %s: %v", req.TenantID, err)
	}
	if s.stored != nil {
		s.stored(ctx, req.TenantID, stored.Revision)
	}
	resp := &Response{
		Key: &enrolled, Revision: stored.Revision, KeyVersion: probe.KeyVersion,
		Identities: s.platform.Identities(key), Probe: probe.Millis,
	}
	resp.Warning = s.publish(ctx, "key", stored.Revision, events.Outgoing{
		Subject: events.SubjectKeyEnrolled(req.TenantID),
		MsgID:   lifecycleMsgID("key_enrolled", req.TenantID, stored.Revision),
		Type:    events.TypeKeyEnrolled,
		Event: &events.KeyEnrolled{TenantID: req.TenantID, KeyURI: uri, Role: string(role),
			KeyVersion: probe.KeyVersion, EnrolledAt: enrolled.EnrolledAt},
	})
	resp.Warning = joinWarnings(resp.Warning, s.publishChanged(ctx, events.TenantOpKeyEnrolled, before, stored))
	s.log.Info("key enrolled", "tenant_id", req.TenantID, "key_uri", uri, "role", role, "key_version", probe.KeyVersion, "revision", stored.Revision)
	return resp
}

// checkKeyUnclaimed refuses a key another tenant has enrolled: a tenant
// that could enroll another's key would have its assets wrapped under a
// key it does not own, and could read that tenant's policy answers. The
// other tenant is not named (a tenant admin must not learn other tenants).
func (s *Server) checkKeyUnclaimed(ctx context.Context, key kms.KeyURI, tenantID string) *Error {
	all, err := s.tenants.List(ctx)
	if err != nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("listing tenants to check the key is not another tenant's: %v", err)}
	}
	want := key.String()
	for _, c := range all {
		if c.TenantID == tenantID {
			continue
		}
		for _, k := range c.Keys {
			if other, err := kms.ParseKeyURI(k.URI); err == nil && other.String() == want {
				s.log.Warn("enrollment refused: key enrolled by another tenant", "tenant_id", tenantID, "key_uri", want, "owner", c.TenantID)
				return &Error{Code: CodeKeyInUse, Message: "this key is enrolled by another tenant: enroll a key of your own (a key belongs to one tenant)"}
			}
		}
	}
	return nil
}

// checkKeyURI parses a key URI and checks this deployment can use it: a
// provider for its scheme, and a region the platform serves.
func (s *Server) checkKeyURI(raw string) (kms.KeyURI, *Error) {
	key, err := kms.ParseKeyURI(raw)
	if err != nil {
		return kms.KeyURI{}, &Error{Code: CodeInvalidKeyURI, Message: err.Error()}
	}
	switch key.Scheme {
	case kms.SchemeAWS, kms.SchemeOCI, kms.SchemeAzure:
	case kms.SchemeLocal:
		if !s.allowLocal {
			return kms.KeyURI{}, &Error{Code: CodeUnsupportedProvider, Message: "localkms keys are for keyward dev and tests; enroll an AWS KMS, OCI Vault or Azure Key Vault key"}
		}
	default:
		return kms.KeyURI{}, &Error{Code: CodeUnsupportedProvider, Message: fmt.Sprintf("no provider for %s", key.Scheme)}
	}
	if err := s.platform.CheckRegion(key); err != nil {
		return kms.KeyURI{}, &Error{Code: CodeRegionNotServed, Message: err.Error()}
	}
	return key, nil
}

// checkRole enforces the shape of a tenant's keys: one primary; replicas
// only next to a primary and on another endpoint (a replica on the
// primary's endpoint fails with it).
func checkRole(c *tenant.Config, key kms.KeyURI, role tenant.KeyRole) *Error {
	if c == nil {
		if role == tenant.RoleReplica {
			return &Error{Code: CodeConflict, Message: "the tenant has no primary key yet: enroll a primary first"}
		}
		return nil
	}
	uri := key.String()
	for _, k := range c.Keys {
		if k.URI == uri {
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("%s is already enrolled for tenant %s (as %s)", uri, c.TenantID, k.Role)}
		}
	}
	primary, hasPrimary := c.PrimaryKey()
	switch {
	case role == tenant.RolePrimary && hasPrimary:
		return &Error{Code: CodeConflict, Message: fmt.Sprintf("tenant %s already has the primary key %s: enroll this key as a replica (--role replica), or rotate to it (keyward tenant key rotate)", c.TenantID, primary.URI)}
	case role == tenant.RoleReplica && !hasPrimary:
		return &Error{Code: CodeConflict, Message: "the tenant has no primary key yet: enroll a primary first"}
	case role == tenant.RoleReplica:
		if pk, err := kms.ParseKeyURI(primary.URI); err == nil && pk.EndpointID() == key.EndpointID() {
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("a replica must be served by another endpoint than the primary (both are %s): use a key in another region or vault", key.EndpointID())}
		}
	}
	return nil
}

// Client is the requesting side (keyward tenant key add).
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
}

// NewClient returns a client; timeout bounds one enrollment (KMS calls
// included; default 60s).
func NewClient(nc *nats.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	return &Client{nc: nc, timeout: timeout}
}

// Add asks the enrollment service to enroll a key (req.Op "" or OpAdd; a
// request with another Op is sent as it is). A refusal is an *Error.
func (c *Client) Add(ctx context.Context, req Request) (*Response, error) {
	return c.Do(ctx, req)
}

// Rotate asks the enrollment service to make req.KeyURI the tenant's
// primary key; the old primary and its replicas become retiring. A refusal
// is an *Error.
func (c *Client) Rotate(ctx context.Context, req RotateRequest) (*Response, error) {
	return c.Do(ctx, Request{Op: OpRotate, TenantID: req.TenantID, KeyURI: req.KeyURI})
}

// ScheduleDeprovision asks the enrollment service to deprovision the
// tenant at req.At (the zero time or a time in the past: now). A refusal is
// an *Error.
func (c *Client) ScheduleDeprovision(ctx context.Context, req ScheduleDeprovisionRequest) (*Response, error) {
	at := req.At.UTC()
	return c.Do(ctx, Request{Op: OpDeprovisionSchedule, TenantID: req.TenantID, At: &at})
}

// CancelDeprovision asks the enrollment service to cancel the tenant's
// scheduled deprovisioning. A refusal is an *Error.
func (c *Client) CancelDeprovision(ctx context.Context, tenantID string) (*Response, error) {
	return c.Do(ctx, Request{Op: OpDeprovisionCancel, TenantID: tenantID})
}

// Apply asks the enrollment service to store doc as the whole
// configuration of tenantID (the document's tenant_id must be tenantID). A
// refusal is an *Error: CodeInvalidDocument lists every problem of the
// document, CodeConflict says a concurrent change came first.
func (c *Client) Apply(ctx context.Context, tenantID string, doc []byte) (*Response, error) {
	return c.Do(ctx, Request{Op: OpApply, TenantID: tenantID, Tenant: json.RawMessage(doc)})
}

// Recipients asks the enrollment service to remove and add email
// recipients of tenantID. A refusal is an *Error (CodeNotRecipient with
// Response.Absent when an address to remove is not listed).
func (c *Client) Recipients(ctx context.Context, tenantID string, add, remove []string) (*Response, error) {
	return c.Do(ctx, Request{Op: OpRecipients, TenantID: tenantID, Add: add, Remove: remove})
}

// PhoneSettings asks the enrollment service to set the drop_calls setting
// of tenantID. A refusal is an *Error.
func (c *Client) PhoneSettings(ctx context.Context, tenantID string, dropCalls bool) (*Response, error) {
	return c.Do(ctx, Request{Op: OpPhoneSettings, TenantID: tenantID, DropCalls: &dropCalls})
}

// Do sends one request to the enrollment service and waits for its reply.
// A refusal is an *Error; a tenant id that is not valid is refused before
// anything is sent (events.ErrInvalid).
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	if err := events.ValidateTenantID(req.TenantID); err != nil {
		return nil, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, events.SubjectKeyEnroll(req.TenantID), b)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, errors.New("no enrollment service is running (it is part of the encryptor: is it up?)")
	}
	if err != nil {
		return nil, fmt.Errorf("enrollment request: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("enrollment service sent an undecodable reply: %w", err)
	}
	if resp.Error != nil {
		resp.Error.request = req.Op
		return &resp, resp.Error
	}
	return &resp, nil
}
