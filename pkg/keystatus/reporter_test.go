package keystatus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

func TestReporter(t *testing.T) {
	env := natstest.Start(t)
	got := make(chan *events.KeyObserved, 16)
	sub, err := env.NC.Subscribe(events.SubjectKeyObservedAll, func(m *nats.Msg) {
		e, err := events.DecodeKeyObserved(m.Data)
		if err != nil {
			t.Errorf("undecodable report: %v", err)
			return
		}
		if m.Subject != events.SubjectKeyObserved(e.TenantID) || m.Header.Get(events.HeaderCEType) != events.TypeKeyObserved {
			t.Errorf("report on %s with type %q", m.Subject, m.Header.Get(events.HeaderCEType))
		}
		got <- e
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	r := keystatus.NewReporter(env.NC, "encryptor/test", keystatus.WithReportInterval(200*time.Millisecond))
	key := kms.MustParseKeyURI("awskms://alias/k?region=eu-west-2")
	other := kms.MustParseKeyURI("awskms://alias/other?region=eu-west-2")
	ctx := context.Background()
	unreachable := &kms.Error{Code: kms.CodeEndpointUnreachable, Op: kms.OpGenerateDataKey}
	next := func() *events.KeyObserved {
		t.Helper()
		select {
		case e := <-got:
			return e
		case <-time.After(2 * time.Second):
			t.Fatal("no report")
			return nil
		}
	}
	none := func() {
		t.Helper()
		env.NC.Flush()
		select {
		case e := <-got:
			t.Fatalf("unexpected report %+v", e)
		case <-time.After(50 * time.Millisecond):
		}
	}

	r.Observe(ctx, "acme", key, kms.OpGenerateDataKey, nil, time.Millisecond) // a success before any failure is not news
	none()
	r.Observe(ctx, "acme", key, kms.OpGenerateDataKey, unreachable, 500*time.Millisecond)
	if e := next(); e.TenantID != "acme" || e.KeyURI != key.String() || e.Outcome != "endpoint_unreachable" || e.Op != "GenerateDataKey" || e.LatencyMS != 500 || e.Worker != "encryptor/test" {
		t.Fatalf("report %+v", e)
	}
	r.Observe(ctx, "acme", key, kms.OpGenerateDataKey, unreachable, 0) // within the interval
	none()
	r.Observe(ctx, "globex", key, kms.OpDecrypt, &kms.Error{Code: kms.CodeKeyDisabled}, 0) // another tenant's use of the key is its own news
	if e := next(); e.TenantID != "globex" || e.Outcome != "key_disabled" {
		t.Fatalf("report %+v", e)
	}
	time.Sleep(250 * time.Millisecond)
	r.Observe(ctx, "acme", key, kms.OpGenerateDataKey, unreachable, 0) // after the interval
	if e := next(); e.Outcome != "endpoint_unreachable" {
		t.Fatalf("report %+v", e)
	}
	r.Observe(ctx, "acme", key, kms.OpGenerateDataKey, nil, 2*time.Millisecond) // recovery is news once
	if e := next(); e.Outcome != "ok" {
		t.Fatalf("report %+v", e)
	}
	r.Observe(ctx, "acme", key, kms.OpGenerateDataKey, nil, 0)
	none()

	// Not about the key: nothing is reported.
	for _, err := range []error{
		&kms.Error{Code: kms.CodeInvalidCiphertext},
		&kms.Error{Code: kms.CodeInvalidArgument},
		&kms.Error{Code: kms.CodeInternal, Err: context.Canceled},
		&kms.Error{Code: kms.CodeEndpointUnreachable, Err: kms.ErrCircuitOpen}, // our own breaker: the failures that opened it were reported
		&kms.Error{Code: kms.CodeThrottled, Err: kms.ErrRateLimited},           // our own rate limiter, not the KMS
		errors.New("not a kms error"),
	} {
		r.Observe(ctx, "acme", other, kms.OpDecrypt, err, 0)
	}
	none()
	// A nil reporter and a reporter without a connection are no-ops.
	var nilReporter *keystatus.Reporter
	nilReporter.Observe(ctx, "acme", key, kms.OpDecrypt, unreachable, 0)
	keystatus.NewReporter(nil, "w").Observe(ctx, "acme", key, kms.OpDecrypt, unreachable, 0)
	none()
}
