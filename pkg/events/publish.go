package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/telemetry"
)

// Header names Keyward sets on every event. CloudEvents attributes use the
// ce- prefix of the CloudEvents NATS binding; trace context uses the W3C
// names in lower case (telemetry.InjectNATS).
const (
	HeaderMsgID       = jetstream.MsgIDHeader // "Nats-Msg-Id": idempotent publishing
	HeaderCESpec      = "ce-specversion"
	HeaderCEID        = "ce-id"
	HeaderCEType      = "ce-type"
	HeaderCESource    = "ce-source"
	HeaderCETime      = "ce-time"
	HeaderContentType = "content-type"
	// HeaderNotify, set by a producer on AssetCreated, names a core NATS
	// subject (an inbox) the encryptor sends the asset's outcome to once it
	// is settled, also when the event was a duplicate. `keyward asset put`
	// uses it to wait for the result.
	HeaderNotify = "Keyward-Notify"
	// HeaderAssetID names the asset of an outcome event, so projections can
	// look it up without decoding the body.
	HeaderAssetID = "Keyward-Asset-Id"
)

// MsgID builds the Nats-Msg-Id of an outcome event. One asset has one id per
// kind of outcome, so a republished outcome is dropped by the stream's
// duplicate window.
func MsgID(kind, tenant, assetID string) string { return kind + "." + tenant + "." + assetID }

// Outgoing is one event to publish.
type Outgoing struct {
	Subject string
	MsgID   string
	Type    string // ce-type, e.g. TypeAssetEncrypted
	Event   any    // marshalled as JSON
	Header  nats.Header
}

// NewMsg builds the NATS message for o: JSON body, Nats-Msg-Id, CloudEvents
// headers and the trace context of ctx.
func NewMsg(ctx context.Context, source string, o Outgoing) (*nats.Msg, error) {
	if o.Subject == "" || o.MsgID == "" || o.Type == "" {
		return nil, errors.New("events: outgoing message needs a subject, a message id and a type")
	}
	data, err := json.Marshal(o.Event)
	if err != nil {
		return nil, fmt.Errorf("events: encoding %s: %w", o.Type, err)
	}
	m := nats.NewMsg(o.Subject)
	m.Data = data
	for k, v := range o.Header {
		m.Header[k] = v
	}
	m.Header.Set(HeaderMsgID, o.MsgID)
	m.Header.Set(HeaderCESpec, "1.0")
	m.Header.Set(HeaderCEID, o.MsgID)
	m.Header.Set(HeaderCEType, o.Type)
	m.Header.Set(HeaderCESource, source)
	m.Header.Set(HeaderCETime, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(HeaderContentType, "application/json")
	telemetry.InjectNATS(ctx, m.Header)
	return m, nil
}

// Publisher publishes events to JetStream with idempotent message ids and
// waits for the stream's acknowledgement.
type Publisher struct {
	js     jetstream.JetStream
	source string
	tracer trace.Tracer
}

// NewPublisher returns a publisher whose events name source (the worker) in
// ce-source.
func NewPublisher(js jetstream.JetStream, source string) *Publisher {
	return &Publisher{js: js, source: source, tracer: otel.Tracer("github.com/keyward/keyward/pkg/events")}
}

// Publish publishes one event and waits for its PubAck. A duplicate (same
// Nats-Msg-Id within the window) is not an error: ack.Duplicate says so.
func (p *Publisher) Publish(ctx context.Context, o Outgoing) (*jetstream.PubAck, error) {
	m, err := NewMsg(ctx, p.source, o)
	if err != nil {
		return nil, err
	}
	ctx, span := telemetry.StartPublishSpan(ctx, p.tracer, o.Subject, m, telemetry.WithDestinationTemplate(templateOf(o.Subject)))
	defer span.End()
	ack, err := p.js.PublishMsg(ctx, m)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, fmt.Errorf("events: publishing %s to %s: %w", o.Type, o.Subject, err)
	}
	return ack, nil
}

// PublishAll publishes every event asynchronously and waits until all are
// acknowledged or ctx ends. The returned slice has one ack per event (nil
// where that event failed); the error joins every failure.
func (p *Publisher) PublishAll(ctx context.Context, out []Outgoing) ([]*jetstream.PubAck, error) {
	acks := make([]*jetstream.PubAck, len(out))
	futures := make([]jetstream.PubAckFuture, len(out))
	var errs []error
	for i, o := range out {
		m, err := NewMsg(ctx, p.source, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("events: publishing %s to %s: %w", o.Type, o.Subject, err))
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			acks[i] = ack
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("events: publishing %s to %s: %w", out[i].Type, out[i].Subject, err))
		case <-ctx.Done():
			return acks, ctx.Err()
		}
	}
	return acks, errors.Join(errs...)
}

// templateOf replaces the last token of a per-tenant subject with a
// placeholder, so span names and attributes have bounded cardinality.
func templateOf(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[:i] + ".{tenant}"
		}
	}
	return subject
}
