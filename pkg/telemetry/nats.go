package telemetry

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Header keys written by InjectNATS (always lowercase: nats.Header, unlike
// http.Header, is case-sensitive).
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	HeaderBaggage     = "baggage"
)

// NATSHeaderCarrier adapts a nats.Header to propagation.TextMapCarrier and
// propagation.ValuesGetter. Set stores lowercase keys and removes any other
// spelling of the same key; Get and Values also find keys written in
// another case by other publishers (for example "Traceparent").
type NATSHeaderCarrier nats.Header

// Get returns the first value of key, matched without regard to case.
func (c NATSHeaderCarrier) Get(key string) string {
	if v := c.Values(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of key, matched without regard to case; the
// lowercase spelling comes first.
func (c NATSHeaderCarrier) Values(key string) []string {
	lk := strings.ToLower(key)
	vals := c[lk]
	for k, v := range c {
		if k != lk && strings.EqualFold(k, key) {
			vals = append(vals[:len(vals):len(vals)], v...)
		}
	}
	return vals
}

// Set stores value under the lowercase key, replacing the values of every
// spelling of it. The header must not be nil.
func (c NATSHeaderCarrier) Set(key, value string) {
	lk := strings.ToLower(key)
	for k := range c {
		if k != lk && strings.EqualFold(k, key) {
			delete(c, k)
		}
	}
	c[lk] = []string{value}
}

// Keys returns the header's keys in lowercase, without duplicates.
func (c NATSHeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	seen := make(map[string]bool, len(c))
	for k := range c {
		lk := strings.ToLower(k)
		if !seen[lk] {
			seen[lk] = true
			keys = append(keys, lk)
		}
	}
	return keys
}

// InjectNATS writes the trace context and baggage of ctx into h as
// lowercase traceparent, tracestate and baggage headers, using Propagator()
// (so it does not depend on Setup having run). h must not be nil: set
// msg.Header = nats.Header{} first. Nothing is written when ctx carries no
// span context or baggage.
func InjectNATS(ctx context.Context, h nats.Header) {
	propagator.Inject(ctx, NATSHeaderCarrier(h))
}

// ExtractNATS returns ctx with the remote span context and baggage found in
// h; ctx is returned unchanged when h carries none. h may be nil.
func ExtractNATS(ctx context.Context, h nats.Header) context.Context {
	return propagator.Extract(ctx, NATSHeaderCarrier(h))
}

// Messaging attribute values for NATS spans (OpenTelemetry semantic
// conventions for messaging; "nats" has no constant in semconv).
var (
	natsSystem = semconv.MessagingSystemKey.String("nats")
)

// Operation names used in messaging span names and
// messaging.operation.name.
const (
	opPublish = "publish"
	opProcess = "process"
)

// MessagingOption adds optional details to StartPublishSpan and
// StartProcessSpan.
type MessagingOption func(*messagingConfig)

type messagingConfig struct {
	template      string
	consumerGroup string
	attrs         []attribute.KeyValue
}

// WithDestinationTemplate names the subject pattern the subject was built
// from, such as "keyward.asset.created.{tenant}". It is recorded as
// messaging.destination.template and, being low-cardinality, used in the
// span name in place of the subject.
func WithDestinationTemplate(template string) MessagingOption {
	return func(c *messagingConfig) { c.template = template }
}

// WithConsumerGroup records the JetStream durable consumer name as
// messaging.consumer.group.name.
func WithConsumerGroup(name string) MessagingOption {
	return func(c *messagingConfig) { c.consumerGroup = name }
}

// WithSpanAttributes adds attributes to the span. Never add secrets; a
// tenant id is fine on a span (spans are not metrics).
func WithSpanAttributes(attrs ...attribute.KeyValue) MessagingOption {
	return func(c *messagingConfig) { c.attrs = append(c.attrs, attrs...) }
}

func (c *messagingConfig) spanStart(op, subject string, kind trace.SpanKind, opType attribute.KeyValue) (string, []trace.SpanStartOption) {
	attrs := []attribute.KeyValue{
		natsSystem,
		opType,
		semconv.MessagingOperationName(op),
		semconv.MessagingDestinationName(subject),
	}
	dest := subject
	if c.template != "" {
		attrs = append(attrs, semconv.MessagingDestinationTemplate(c.template))
		dest = c.template
	}
	if c.consumerGroup != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(c.consumerGroup))
	}
	attrs = append(attrs, c.attrs...)
	name := op
	if dest != "" {
		name = op + " " + dest
	}
	return name, []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}
}

// StartPublishSpan starts a producer span for publishing msg to subject
// (msg.Subject when subject is "") and injects the new span's context into
// msg.Header, creating the header if needed. The span is named
// "publish <subject>" (or "publish <template>", see
// WithDestinationTemplate) and carries messaging.system=nats,
// messaging.operation.type=send, messaging.operation.name=publish,
// messaging.destination.name, messaging.message.body.size and, when
// msg has a Nats-Msg-Id header, messaging.message.id. End the span after
// the publish is acknowledged; record a failure with span.RecordError and
// span.SetStatus.
func StartPublishSpan(ctx context.Context, tracer trace.Tracer, subject string, msg *nats.Msg, opts ...MessagingOption) (context.Context, trace.Span) {
	var c messagingConfig
	for _, o := range opts {
		o(&c)
	}
	if subject == "" && msg != nil {
		subject = msg.Subject
	}
	name, startOpts := c.spanStart(opPublish, subject, trace.SpanKindProducer, semconv.MessagingOperationTypeSend)
	if msg != nil {
		extra := []attribute.KeyValue{semconv.MessagingMessageBodySize(len(msg.Data))}
		if id := msg.Header.Get(nats.MsgIdHdr); id != "" {
			extra = append(extra, semconv.MessagingMessageID(id))
		}
		startOpts = append(startOpts, trace.WithAttributes(extra...))
	}
	ctx, span := tracer.Start(ctx, name, startOpts...)
	if msg != nil {
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		InjectNATS(ctx, msg.Header)
	}
	return ctx, span
}

// StartProcessSpan starts a consumer span for processing a message
// received on subject with header h (use msg.Subject and msg.Header, or
// jetstream.Msg's Subject() and Headers()). The parent is the span context
// found in h, if any, else whatever ctx carries; baggage in h is added to
// the returned context too. The span is named "process <subject>" (or
// "process <template>") and carries messaging.system=nats,
// messaging.operation.type=process, messaging.operation.name=process and
// messaging.destination.name. Logging with the returned context adds the
// trace ids (see NewLogger).
func StartProcessSpan(ctx context.Context, tracer trace.Tracer, subject string, h nats.Header, opts ...MessagingOption) (context.Context, trace.Span) {
	var c messagingConfig
	for _, o := range opts {
		o(&c)
	}
	ctx = ExtractNATS(ctx, h)
	name, startOpts := c.spanStart(opProcess, subject, trace.SpanKindConsumer, semconv.MessagingOperationTypeProcess)
	return tracer.Start(ctx, name, startOpts...)
}
