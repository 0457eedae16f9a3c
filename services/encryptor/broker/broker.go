// Package broker serves the key broker: request-reply on
// keyward.key.unwrap.<tenant>, returning one asset's key sealed with HPKE to
// the requester's ephemeral public key (protocol: pkg/keybroker).
//
// For every request the broker checks, in order: the subject's tenant is the
// request's tenant; the asset is in its ledger and was stored (not
// rejected); the prefix the reader sent is that asset's ciphertext (same key
// URI, wrapped seed and header digest as the ledger); the KMS unwraps the
// seed under the tenant's encryption context; the key commitment holds for
// the asset's identity. Only then is the per-asset key derived and sealed.
// A request for one tenant can never touch another tenant's key.
//
// The broker is the NATS micro service keyward-key-broker (package
// pkg/rpc): endpoint "unwrap" in the queue group keyward-key-broker, found
// with `nats micro ls` and watched with `nats micro stats
// keyward-key-broker`; at most Options.Concurrency requests (64) are
// handled at once, the next waits for a slot. A refusal is the
// UnwrapResponse with its error object, plus micro's error headers
// Nats-Service-Error-Code (the keybroker code) and Nats-Service-Error.
package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/rpc"
	"github.com/keyward/keyward/pkg/tenant"
)

const (
	// QueueGroup is the queue group every broker instance joins, so each
	// request is answered once.
	QueueGroup = "keyward-key-broker"
	// ServiceName is the broker's NATS micro service name.
	ServiceName = "keyward-key-broker"
	// DefaultConcurrency bounds the requests one broker handles at once.
	DefaultConcurrency = 64
)

// Server answers unwrap requests.
type Server struct {
	nc          *nats.Conn
	ledger      *ledger.Store
	seeds       *kms.SeedCache
	log         *slog.Logger
	tracer      trace.Tracer
	concurrency int
	timeout     time.Duration
	status      func(tenantID, keyURI string) events.KeyStatus
	report      *keystatus.Reporter
	authorize   bool
	tenant      func(tenantID string) (*tenant.Config, bool)
	record      func(ctx context.Context, e *events.KeyAccess) error
	now         func() time.Time

	requests metric.Int64Counter

	mu  sync.Mutex
	srv *rpc.Server
}

// Options tune a Server.
type Options struct {
	// Authorize releases a key only to a caller NATS authenticated (the
	// server-set Nats-Request-Info of the shared service import): a reader
	// whose services cover the asset's service and whose purposes cover the
	// request's purpose, for a purpose the tenant does not deny. Everything
	// else is refused with not_authorized or purpose_denied. Turn it off
	// only where NATS runs without authentication (tests, keyward dev
	// --no-auth): then any request is served, as before access control.
	Authorize bool
	// Tenant gives a tenant's configuration (its denied purposes); nil
	// denies nothing.
	Tenant func(tenantID string) (*tenant.Config, bool)
	// Record, when set, records every release and refusal of a known
	// tenant's asset (KeyAccess on KW_AUDIT). A release is answered only
	// once its record is stored; a release that cannot be recorded is
	// refused (internal).
	Record        func(ctx context.Context, e *events.KeyAccess) error
	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
	// Concurrency bounds requests in flight (KMS calls may be slow); default
	// DefaultConcurrency. When that many are in flight the next request
	// waits for one to finish.
	Concurrency int
	// Timeout bounds one request's work; default 5s.
	Timeout time.Duration
	// KeyStatus, when set, gives the current status of a tenant's key
	// (KW_KEY_STATUS): a key the key-health-monitor has found revoked is
	// refused at once, without a KMS call.
	KeyStatus func(tenantID, keyURI string) events.KeyStatus
	// Reporter, when set, reports KMS failures seen while unwrapping to the
	// key-health-monitor.
	Reporter *keystatus.Reporter
}

// New returns a server; Start serves it on nc, the connection readers'
// requests arrive on (the ledger and seed cache are its own).
func New(nc *nats.Conn, store *ledger.Store, seeds *kms.SeedCache, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	requests, err := o.MeterProvider.Meter("github.com/keyward/keyward/services/encryptor/broker").Int64Counter(
		"keyward_key_broker_requests_total",
		metric.WithDescription("Key broker requests by outcome (ok or an error code)."))
	if err != nil {
		return nil, err
	}
	return &Server{
		nc: nc, ledger: store, seeds: seeds, log: o.Logger,
		tracer:      otel.Tracer("github.com/keyward/keyward/services/encryptor/broker"),
		concurrency: o.Concurrency, timeout: o.Timeout, requests: requests,
		status: o.KeyStatus, report: o.Reporter,
		authorize: o.Authorize, tenant: o.Tenant, record: o.Record, now: time.Now,
	}, nil
}

// Start adds the micro service keyward-key-broker on the server's
// connection: endpoint "unwrap" on keyward.key.unwrap.* in the broker queue
// group.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("key broker: already started")
	}
	srv, err := rpc.Start(s.nc, rpc.Config{
		Name:        ServiceName,
		Description: "Keyward key broker: one asset's key, checked against the ledger and sealed with HPKE to the reader",
		QueueGroup:  QueueGroup,
		Endpoint:    "unwrap",
		Subject:     events.SubjectKeyUnwrapAll,
		Concurrency: s.concurrency,
		Timeout:     s.timeout,
		Tracer:      s.tracer,
		SpanSubject: "keyward.key.unwrap.{tenant}",
		Logger:      s.log,
		Handler:     s.handle,
	})
	if err != nil {
		return fmt.Errorf("key broker: %w", err)
	}
	s.srv = srv
	return nil
}

// Stop stops the service and waits until every request it received is
// answered.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			s.log.Warn("stopping the key broker", "error", err)
		}
	}
}

func (s *Server) handle(ctx context.Context, r *rpc.Request) {
	var acc events.KeyAccess
	resp := s.serve(ctx, r, &acc)
	resp = s.recordAccess(ctx, &acc, resp)
	outcome := "ok"
	if resp.Error != nil {
		outcome = resp.Error.Code
		trace.SpanFromContext(ctx).SetAttributes(attribute.String("keyward.broker.error", resp.Error.Code))
	}
	s.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	if resp.Error != nil {
		_ = r.RespondError(resp.Error.Code, resp.Error.Message, resp)
		return
	}
	_ = r.Respond(resp)
}

func refuse(code, format string, args ...any) *keybroker.UnwrapResponse {
	return &keybroker.UnwrapResponse{Error: &keybroker.Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// recordAccess records the decision in acc (filled by serve as far as it
// got) once its tenant and asset are known. A release whose record is not
// stored is turned into a refusal: no key leaves unrecorded.
func (s *Server) recordAccess(ctx context.Context, acc *events.KeyAccess, resp *keybroker.UnwrapResponse) *keybroker.UnwrapResponse {
	if s.record == nil || acc.TenantID == "" || acc.AssetID == "" {
		return resp
	}
	acc.At = s.now().UTC()
	if resp.Error == nil {
		acc.Result, acc.KeyURI, acc.Mode = events.KeyAccessReleased, resp.KeyURI, resp.Mode
	} else {
		acc.Result, acc.Code = events.KeyAccessRefused, resp.Error.Code
		acc.Detail = clip(resp.Error.Message, 512)
	}
	err := s.record(ctx, acc)
	if err == nil {
		return resp
	}
	s.log.ErrorContext(ctx, "key broker could not record a key access", "tenant", acc.TenantID, "asset", acc.AssetID, "result", acc.Result, "error", err)
	if resp.Error == nil {
		return refuse(keybroker.CodeInternal, "the release of %s/%s could not be recorded in the audit trail, so it was not made: retry", acc.TenantID, acc.AssetID)
	}
	return resp
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// authorizeCaller decides, before the ledger is read, whether the caller
// of r may ask tenantID's keys for purpose at all, filling acc's caller; it
// returns nil to allow. The asset's service is checked once it is known
// (authorizeService), so a caller without a grant learns nothing of the
// tenant's assets.
func (s *Server) authorizeCaller(r *rpc.Request, tenantID, purpose string, acc *events.KeyAccess) (access.Caller, *keybroker.UnwrapResponse) {
	caller, err := access.CallerFrom(r.Header())
	if err == nil {
		acc.Caller = events.KeyAccessCaller{Name: caller.Name, User: caller.User, Account: caller.Account, Role: string(caller.Role)}
	}
	if !s.authorize {
		return caller, nil
	}
	if err != nil {
		return caller, refuse(keybroker.CodeNotAuthorized, "the request carries no caller identity (%v): the key broker releases keys only to readers NATS authenticated", err)
	}
	if caller.Role != access.RoleReader {
		return caller, refuse(keybroker.CodeNotAuthorized, "%s is not a reader: only reader identities may have an asset's key", caller)
	}
	if purpose == "" {
		return caller, refuse(keybroker.CodeInvalidRequest, "purpose is required: say why the key is needed, one of %s", purposeList())
	}
	if err := events.ValidatePurpose(purpose); err != nil {
		return caller, refuse(keybroker.CodeInvalidRequest, "purpose: %v", err)
	}
	if !caller.MayPurpose(purpose) {
		return caller, refuse(keybroker.CodeNotAuthorized, "%s may ask for purposes %v, not %s", caller, caller.Purposes, purpose)
	}
	if s.tenant != nil {
		if t, ok := s.tenant(tenantID); ok && t.PurposeDenied(purpose) {
			return caller, refuse(keybroker.CodePurposeDenied, "tenant %s denies the purpose %s for its content", tenantID, purpose)
		}
	}
	return caller, nil
}

// authorizeService refuses a reader whose services do not cover the
// asset's.
func (s *Server) authorizeService(caller access.Caller, service string) *keybroker.UnwrapResponse {
	if s.authorize && !caller.MayService(service) {
		return refuse(keybroker.CodeNotAuthorized, "%s may read services %v, not %s", caller, caller.Services, service)
	}
	return nil
}

func purposeList() string {
	var names []string
	for _, p := range events.Purposes {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

// serve decides one request, filling acc with what it learns. r's headers
// are the reader's (the server-set Nats-Request-Info).
func (s *Server) serve(ctx context.Context, r *rpc.Request, acc *events.KeyAccess) *keybroker.UnwrapResponse {
	subjectTenant, err := events.TenantFromSubject(r.Subject())
	if err != nil {
		return refuse(keybroker.CodeInvalidRequest, "%v", err)
	}
	var req keybroker.UnwrapRequest
	if err := events.Decode("UnwrapRequest", r.Data(), &req); err != nil {
		return refuse(keybroker.CodeInvalidRequest, "%v", err)
	}
	if req.TenantID != subjectTenant {
		return refuse(keybroker.CodeTenantMismatch, "request for tenant %q sent on the subject of tenant %q", req.TenantID, subjectTenant)
	}
	if err := events.ValidateAssetID(req.AssetID); err != nil {
		return refuse(keybroker.CodeInvalidRequest, "%v", err)
	}
	acc.TenantID, acc.AssetID, acc.Purpose = req.TenantID, req.AssetID, clip(req.Purpose, 64)
	if events.ValidatePurpose(req.Purpose) != nil {
		acc.Purpose = ""
	}
	if len(req.RecipientPublicKey) != 32 {
		return refuse(keybroker.CodeInvalidRequest, "recipient_public_key must be a 32-byte X25519 public key")
	}
	caller, refusal := s.authorizeCaller(r, req.TenantID, req.Purpose, acc)
	if refusal != nil {
		return refusal
	}
	rec, err := s.ledger.Get(ctx, req.TenantID, req.AssetID)
	if errors.Is(err, ledger.ErrNotFound) {
		return refuse(keybroker.CodeAssetNotFound, "asset %s/%s is not in the broker's ledger (not stored, or not yet projected: retry)", req.TenantID, req.AssetID)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "key broker ledger lookup failed", "error", err)
		return refuse(keybroker.CodeInternal, "ledger lookup failed")
	}
	acc.Service = rec.Service
	if refusal := s.authorizeService(caller, rec.Service); refusal != nil {
		return refusal
	}
	if rec.State != ledger.StateEncrypted {
		return refuse(keybroker.CodeAssetRejected, "asset %s/%s was not stored (%s)", req.TenantID, req.AssetID, rec.RejectReason)
	}
	prefix, err := envelope.ParsePrefix(req.Prefix)
	if err != nil {
		return refuse(keybroker.CodeInvalidRequest, "prefix: %v", err)
	}
	hsum := sha256.Sum256(prefix.RawHeader)
	if prefix.Header.KeyURI != rec.KeyURI || !bytes.Equal(prefix.Header.WrappedSeed, rec.WrappedSeed) || !bytes.Equal(hsum[:], rec.HeaderSHA256) {
		return refuse(keybroker.CodePrefixMismatch, "the prefix is not the ciphertext of %s/%s recorded in the ledger", req.TenantID, req.AssetID)
	}
	key, err := kms.ParseKeyURI(rec.KeyURI)
	if err != nil {
		return refuse(keybroker.CodeInternal, "ledger key URI: %v", err)
	}
	if rec.Mode == events.ModeCustomer && s.status != nil && s.status(req.TenantID, rec.KeyURI) == events.KeyStatusRevoked {
		return refuse(keybroker.CodeKeyRevoked, "%s is revoked (disabled, access denied or deleted): the asset cannot be read until the customer restores the key", rec.KeyURI)
	}
	start := time.Now()
	seed, err := s.seeds.Unwrap(ctx, key, rec.WrappedSeed, kms.NewEncryptionContext(req.TenantID, kms.PurposeAssetSeed))
	if rec.Mode == events.ModeCustomer {
		s.report.Observe(ctx, req.TenantID, key, kms.OpDecrypt, err, time.Since(start))
	}
	if err != nil {
		code := keybroker.CodeKeyUnavailable
		if kms.IsKeyUnusable(err) {
			code = keybroker.CodeKeyRevoked
		}
		return refuse(code, "%s: %v", rec.KeyURI, kms.CodeOf(err))
	}
	defer seed.Destroy()
	mk, err := prefix.MessageKey(seed, envelope.Identity{TenantID: req.TenantID, AssetID: req.AssetID, Service: rec.Service})
	if err != nil {
		return refuse(keybroker.CodePrefixMismatch, "the ciphertext of %s/%s does not open under its recorded key: %v", req.TenantID, req.AssetID, err)
	}
	defer mk.Destroy()
	sealed, err := keybroker.Seal(req.RecipientPublicKey, req.TenantID, req.AssetID, mk)
	if err != nil {
		return refuse(keybroker.CodeInvalidRequest, "%v", err)
	}
	return &keybroker.UnwrapResponse{Suite: keybroker.Suite, SealedKey: sealed, KeyURI: rec.KeyURI, Mode: string(rec.Mode)}
}
