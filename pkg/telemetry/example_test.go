package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/telemetry"
)

func Example() {
	ctx := context.Background()
	// In main: Getenv: os.Getenv.
	env := map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=dev"}

	tel, err := telemetry.Setup(ctx, telemetry.Config{
		ServiceName:    "encryptor",
		ServiceVersion: "1.0.0",
		Getenv:         func(k string) string { return env[k] },
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tel.Shutdown(ctx)

	encrypted, _ := tel.Meter("github.com/keyward/keyward/services/encryptor").
		Int64Counter("keyward.assets.encrypted")
	encrypted.Add(ctx, 1)

	tel.AddReadyCheck("nats", func(context.Context) error { return nil })
	tel.SetReady("ledger", nil)

	// In main: go tel.ListenAndServe(ctx, ":9090").
	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(path, " ", resp.StatusCode, " ", string(body))
	}
	resp, _ := srv.Client().Get(srv.URL + "/metrics")
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(strings.Contains(string(metrics), "keyward_assets_encrypted_total{"))
	// Output:
	// /healthz 200 ok
	// /readyz 200 {"status":"ready","checks":{"ledger":"ok","nats":"ok"}}
	// true
}

func ExampleStartPublishSpan() {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "encryptor", Getenv: func(string) string { return "" }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tel.Shutdown(ctx)
	tracer := tel.Tracer("github.com/keyward/keyward/pkg/events")

	// Producer.
	msg := nats.NewMsg("keyward.asset.created.acme")
	_, pub := telemetry.StartPublishSpan(ctx, tracer, msg.Subject, msg,
		telemetry.WithDestinationTemplate("keyward.asset.created.{tenant}"))
	// js.PublishMsg(ctx, msg) ...
	pub.End()
	fmt.Println(len(msg.Header.Get("traceparent")), msg.Header.Get("Traceparent") == "")

	// Consumer: the process span continues the producer's trace; logging
	// with its context (log.InfoContext(pctx, ...)) adds trace_id and span_id.
	_, proc := telemetry.StartProcessSpan(ctx, tracer, msg.Subject, msg.Header)
	defer proc.End()
	fmt.Println(proc.SpanContext().TraceID() == pub.SpanContext().TraceID())
	// Output:
	// 55 true
	// true
}
