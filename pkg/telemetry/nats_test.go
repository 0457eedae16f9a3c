package telemetry_test

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/telemetry"
)

var _ interface {
	propagation.TextMapCarrier
	propagation.ValuesGetter
} = telemetry.NATSHeaderCarrier{}

func TestNATSRoundTrip(t *testing.T) {
	ctx, span := newTracer(t).Start(context.Background(), "publish")
	defer span.End()
	member, err := baggage.NewMember("origin", "cloud")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx = baggage.ContextWithBaggage(ctx, bag)

	h := nats.Header{}
	telemetry.InjectNATS(ctx, h)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"baggage", "traceparent"}; !slices.Equal(keys, want) {
		t.Fatalf("header keys after InjectNATS = %v, want %v", keys, want)
	}
	// nats.Header is case-sensitive: the canonical HTTP spelling must be absent.
	if h.Get("Traceparent") != "" {
		t.Errorf(`header has "Traceparent"; want only lowercase keys`)
	}

	got := telemetry.ExtractNATS(context.Background(), h)
	sc := trace.SpanContextFromContext(got)
	if sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() || !sc.IsRemote() {
		t.Errorf("extracted span context = %v, want the remote %v", sc, span.SpanContext())
	}
	if v := baggage.FromContext(got).Member("origin").Value(); v != "cloud" {
		t.Errorf("extracted baggage origin = %q, want cloud", v)
	}
}

func TestNATSExtractWithoutContext(t *testing.T) {
	for name, h := range map[string]nats.Header{"nil": nil, "empty": {}, "garbage": {"traceparent": {"not-a-traceparent"}}} {
		if sc := trace.SpanContextFromContext(telemetry.ExtractNATS(context.Background(), h)); sc.IsValid() {
			t.Errorf("ExtractNATS(%s header) span context = %v, want invalid", name, sc)
		}
	}
	h := nats.Header{}
	telemetry.InjectNATS(context.Background(), h)
	if len(h) != 0 {
		t.Errorf("InjectNATS without a span wrote %v, want nothing", h)
	}
}

func TestNATSHeaderCarrierCase(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := nats.Header{"Traceparent": {tp}, "Nats-Msg-Id": {"a1"}}
	c := telemetry.NATSHeaderCarrier(h)
	if got := c.Get("traceparent"); got != tp {
		t.Errorf("Get(traceparent) over a Traceparent key = %q, want %q", got, tp)
	}
	if sc := trace.SpanContextFromContext(telemetry.ExtractNATS(context.Background(), h)); sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("ExtractNATS over a Traceparent key gave %v", sc)
	}
	c.Set("traceparent", "x")
	if _, ok := h["Traceparent"]; ok || h.Get("traceparent") != "x" {
		t.Errorf("after Set(traceparent) header = %v, want only the lowercase key", h)
	}
	keys := c.Keys()
	slices.Sort(keys)
	if want := []string{"nats-msg-id", "traceparent"}; !slices.Equal(keys, want) {
		t.Errorf("Keys() = %v, want %v", keys, want)
	}
	h2 := nats.Header{"baggage": {"a=1"}, "Baggage": {"b=2"}}
	if got := telemetry.NATSHeaderCarrier(h2).Values("baggage"); !slices.Equal(got, []string{"a=1", "b=2"}) {
		t.Errorf("Values(baggage) = %v, want [a=1 b=2]", got)
	}
	if got := h2["baggage"]; !slices.Equal(got, []string{"a=1"}) {
		t.Errorf("Values modified the header: baggage = %v", got)
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestMessagingSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := tp.Tracer("test")

	msg := &nats.Msg{Subject: "keyward.asset.created.acme", Data: []byte("12345")}
	msg.Header = nats.Header{nats.MsgIdHdr: {"asset-1"}}
	pctx, pub := telemetry.StartPublishSpan(context.Background(), tracer, "", msg,
		telemetry.WithDestinationTemplate("keyward.asset.created.{tenant}"))
	pub.End()
	if trace.SpanFromContext(pctx) != pub {
		t.Error("StartPublishSpan context does not hold the publish span")
	}
	if msg.Header.Get("traceparent") == "" {
		t.Fatalf("publish did not inject traceparent: %v", msg.Header)
	}

	// The consumer side, in another process: a fresh context.
	_, proc := telemetry.StartProcessSpan(context.Background(), tracer, msg.Subject, msg.Header,
		telemetry.WithConsumerGroup("encryptor"))
	proc.End()

	// A nil header is created on publish.
	bare := &nats.Msg{Subject: "keyward.dlq.invalid_event"}
	_, s := telemetry.StartPublishSpan(context.Background(), tracer, bare.Subject, bare)
	s.End()
	if bare.Header.Get("traceparent") == "" {
		t.Errorf("StartPublishSpan with a nil header did not create it: %v", bare.Header)
	}

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("got %d ended spans, want 3", len(spans))
	}
	p, c := spans[0], spans[1]
	if p.Name() != "publish keyward.asset.created.{tenant}" || p.SpanKind() != trace.SpanKindProducer {
		t.Errorf("publish span = %q %v, want \"publish keyward.asset.created.{tenant}\" producer", p.Name(), p.SpanKind())
	}
	wantP := map[string]string{
		"messaging.system":               "nats",
		"messaging.operation.type":       "send",
		"messaging.operation.name":       "publish",
		"messaging.destination.name":     "keyward.asset.created.acme",
		"messaging.destination.template": "keyward.asset.created.{tenant}",
		"messaging.message.id":           "asset-1",
		"messaging.message.body.size":    "5",
	}
	if got := attrMap(p.Attributes()); !maps.Equal(got, wantP) {
		t.Errorf("publish attributes = %v\nwant %v", got, wantP)
	}

	if c.Name() != "process keyward.asset.created.acme" || c.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("process span = %q %v, want \"process keyward.asset.created.acme\" consumer", c.Name(), c.SpanKind())
	}
	if c.Parent().SpanID() != p.SpanContext().SpanID() || c.SpanContext().TraceID() != p.SpanContext().TraceID() || !c.Parent().IsRemote() {
		t.Errorf("process span parent = %v trace %v, want the publish span %v (remote)", c.Parent(), c.SpanContext().TraceID(), p.SpanContext())
	}
	wantC := map[string]string{
		"messaging.system":              "nats",
		"messaging.operation.type":      "process",
		"messaging.operation.name":      "process",
		"messaging.destination.name":    "keyward.asset.created.acme",
		"messaging.consumer.group.name": "encryptor",
	}
	if got := attrMap(c.Attributes()); !maps.Equal(got, wantC) {
		t.Errorf("process attributes = %v\nwant %v", got, wantC)
	}
	if spans[2].Name() != "publish keyward.dlq.invalid_event" {
		t.Errorf("span name = %q, want the subject when no template is given", spans[2].Name())
	}
}
