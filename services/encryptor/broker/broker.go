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
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/rpc"
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

	requests metric.Int64Counter

	mu  sync.Mutex
	srv *rpc.Server
}

// Options tune a Server.
type Options struct {
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
	resp := s.serve(ctx, r)
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

// serve decides one request. r's headers are the reader's (e.g. the
// server-set Nats-Request-Info).
func (s *Server) serve(ctx context.Context, r *rpc.Request) *keybroker.UnwrapResponse {
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
	if len(req.RecipientPublicKey) != 32 {
		return refuse(keybroker.CodeInvalidRequest, "recipient_public_key must be a 32-byte X25519 public key")
	}
	rec, err := s.ledger.Get(ctx, req.TenantID, req.AssetID)
	if errors.Is(err, ledger.ErrNotFound) {
		return refuse(keybroker.CodeAssetNotFound, "asset %s/%s is not in the broker's ledger (not stored, or not yet projected: retry)", req.TenantID, req.AssetID)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "key broker ledger lookup failed", "error", err)
		return refuse(keybroker.CodeInternal, "ledger lookup failed")
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
