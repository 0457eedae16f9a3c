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
package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
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
	"github.com/keyward/keyward/pkg/telemetry"
)

// QueueGroup is the queue group every broker instance joins, so each request
// is answered once.
const QueueGroup = "keyward-key-broker"

// Server answers unwrap requests.
type Server struct {
	nc      *nats.Conn
	ledger  *ledger.Store
	seeds   *kms.SeedCache
	log     *slog.Logger
	tracer  trace.Tracer
	sem     chan struct{}
	timeout time.Duration
	status  func(tenantID, keyURI string) events.KeyStatus
	report  *keystatus.Reporter

	requests metric.Int64Counter

	mu  sync.Mutex
	sub *nats.Subscription
	wg  sync.WaitGroup
}

// Options tune a Server.
type Options struct {
	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
	// Concurrency bounds requests in flight (KMS calls may be slow); default 64.
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

// New returns a server; call Start to subscribe.
func New(nc *nats.Conn, store *ledger.Store, seeds *kms.SeedCache, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
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
		tracer: otel.Tracer("github.com/keyward/keyward/services/encryptor/broker"),
		sem:    make(chan struct{}, o.Concurrency), timeout: o.Timeout, requests: requests,
		status: o.KeyStatus, report: o.Reporter,
	}, nil
}

// Start subscribes to keyward.key.unwrap.* in the broker queue group.
func (s *Server) Start() error {
	sub, err := s.nc.QueueSubscribe(events.SubjectKeyUnwrapAll, QueueGroup, s.handle)
	if err != nil {
		return fmt.Errorf("key broker: subscribing: %w", err)
	}
	s.mu.Lock()
	s.sub = sub
	s.mu.Unlock()
	return nil
}

// Stop drains the subscription and waits for requests in flight.
func (s *Server) Stop() {
	s.mu.Lock()
	sub := s.sub
	s.mu.Unlock()
	if sub != nil {
		_ = sub.Drain()
	}
	s.wg.Wait()
}

func (s *Server) handle(m *nats.Msg) {
	s.sem <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer func() { <-s.sem; s.wg.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		ctx, span := telemetry.StartProcessSpan(ctx, s.tracer, m.Subject, m.Header, telemetry.WithDestinationTemplate("keyward.key.unwrap.{tenant}"))
		defer span.End()
		resp := s.serve(ctx, m)
		outcome := "ok"
		if resp.Error != nil {
			outcome = resp.Error.Code
			span.SetAttributes(attribute.String("keyward.broker.error", resp.Error.Code))
		}
		s.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
		data, _ := json.Marshal(resp)
		if err := m.Respond(data); err != nil {
			s.log.WarnContext(ctx, "key broker could not reply", "error", err)
		}
	}()
}

func refuse(code, format string, args ...any) *keybroker.UnwrapResponse {
	return &keybroker.UnwrapResponse{Error: &keybroker.Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

func (s *Server) serve(ctx context.Context, m *nats.Msg) *keybroker.UnwrapResponse {
	subjectTenant, err := events.TenantFromSubject(m.Subject)
	if err != nil {
		return refuse(keybroker.CodeInvalidRequest, "%v", err)
	}
	var req keybroker.UnwrapRequest
	if err := events.Decode("UnwrapRequest", m.Data, &req); err != nil {
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
