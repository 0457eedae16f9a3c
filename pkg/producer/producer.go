// Package producer is the client side of ingestion, for platform services
// and `keyward asset put`: stage an asset's plaintext in KW_STAGING (or
// carry it inline), publish AssetCreated with an idempotent message id, and
// wait for the encryptor's outcome on a private inbox (the Keyward-Notify
// header).
package producer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/vault"
)

// DefaultInlineLimit is the largest asset Put sends inline; larger ones are
// staged. It matches the encryptor's default inline limit.
const DefaultInlineLimit = 256 << 10

// Asset describes one asset to ingest.
type Asset struct {
	TenantID    string
	AssetID     string
	Service     string
	OwnerUserID string
	Origin      events.Origin // default cloud
	CreatedAt   time.Time     // default now
	ContentType string
	Metadata    map[string]string
}

// Outcome is what the encryptor did with an asset: exactly one is set.
type Outcome struct {
	Encrypted *events.AssetEncrypted
	Rejected  *events.AssetRejected
}

// Producer stages and publishes assets.
type Producer struct {
	nc          *nats.Conn
	js          jetstream.JetStream
	staging     *vault.Store
	inlineLimit int64
}

// Option tunes a Producer.
type Option func(*Producer)

// WithInlineLimit sets the size up to which content is sent inline.
func WithInlineLimit(n int64) Option { return func(p *Producer) { p.inlineLimit = n } }

// New returns a producer. The staging bucket must exist.
func New(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, opts ...Option) (*Producer, error) {
	st, err := vault.Open(ctx, js, events.BucketStaging)
	if err != nil {
		return nil, err
	}
	p := &Producer{nc: nc, js: js, staging: st, inlineLimit: DefaultInlineLimit}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// Pending is a published asset whose outcome may be awaited.
type Pending struct {
	sub     *nats.Subscription
	Event   *events.AssetCreated
	PubAck  *jetstream.PubAck
	created time.Time
}

// Put stages r (size bytes; -1 if unknown, which forces staging) and
// publishes AssetCreated. Call Wait on the result for the outcome, or Close
// to stop listening. Each Put is one event with its own Nats-Msg-Id
// ("created.<tenant>.<asset>.<unique>"): the publish itself is deduplicated
// by JetStream, and the asset id makes a second Put of an encrypted asset a
// no-op whose outcome is the first one.
func (p *Producer) Put(ctx context.Context, a Asset, r io.Reader, size int64) (*Pending, error) {
	if a.Origin == "" {
		a.Origin = events.OriginCloud
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now().UTC()
	}
	ev := &events.AssetCreated{
		TenantID: a.TenantID, AssetID: a.AssetID, Service: a.Service, OwnerUserID: a.OwnerUserID,
		Origin: a.Origin, CreatedAt: a.CreatedAt, ContentType: a.ContentType, Metadata: a.Metadata,
	}
	if size >= 0 && size <= p.inlineLimit {
		data, err := io.ReadAll(io.LimitReader(r, p.inlineLimit+1))
		if err != nil {
			return nil, fmt.Errorf("reading the content: %w", err)
		}
		if int64(len(data)) != size {
			return nil, fmt.Errorf("content is %d bytes, expected %d", len(data), size)
		}
		sum := sha256.Sum256(data)
		ev.Content = events.Content{Inline: data}
		ev.Size = &size
		ev.SHA256 = hex.EncodeToString(sum[:])
	} else {
		name := ev.TenantID + "/" + ev.AssetID
		h := sha256.New()
		info, err := p.staging.Put(ctx, name, io.TeeReader(r, h), jetstream.ObjectMeta{})
		if err != nil {
			return nil, fmt.Errorf("staging the content: %w", err)
		}
		n := int64(info.Size)
		ev.Content = events.Content{Bucket: events.BucketStaging, Object: name}
		ev.Size = &n
		ev.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	inbox := p.nc.NewInbox()
	sub, err := p.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	out := events.Outgoing{
		Subject: events.SubjectAssetCreated(ev.TenantID),
		MsgID:   events.MsgID("created", ev.TenantID, ev.AssetID) + "." + nuid.Next(),
		Type:    events.TypeAssetCreated,
		Event:   ev,
		Header:  nats.Header{events.HeaderNotify: []string{inbox}},
	}
	m, err := events.NewMsg(ctx, "keyward-producer", out)
	if err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	ack, err := p.js.PublishMsg(ctx, m)
	if err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("publishing AssetCreated: %w", err)
	}
	return &Pending{sub: sub, Event: ev, PubAck: ack, created: time.Now()}, nil
}

// ErrNoOutcome is returned by Wait when no outcome arrived in time.
var ErrNoOutcome = errors.New("no outcome from the encryptor in time (is it running? see keyward status)")

// Wait waits for the outcome until ctx ends.
func (pd *Pending) Wait(ctx context.Context) (*Outcome, error) {
	defer pd.sub.Unsubscribe()
	for {
		m, err := pd.sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ErrNoOutcome
			}
			return nil, err
		}
		switch m.Header.Get(events.HeaderCEType) {
		case events.TypeAssetEncrypted:
			var e events.AssetEncrypted
			if err := events.Decode(events.TypeAssetEncrypted, m.Data, &e); err != nil {
				return nil, err
			}
			return &Outcome{Encrypted: &e}, nil
		case events.TypeAssetRejected:
			var e events.AssetRejected
			if err := events.Decode(events.TypeAssetRejected, m.Data, &e); err != nil {
				return nil, err
			}
			return &Outcome{Rejected: &e}, nil
		}
	}
}

// Close stops listening for the outcome.
func (pd *Pending) Close() { _ = pd.sub.Unsubscribe() }
