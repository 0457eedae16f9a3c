package phonepolicy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/rpc"
	"github.com/keyward/keyward/pkg/rpc/rpctest"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
)

// TestAdmissionIsAMicroService: admissions are the micro service
// keyward-phone-admission, served on Deps.AdmitNC (not the worker's own
// connection), answered inline; an error reply is the CallDecision with
// its error object plus micro's error headers with the same code; STATS
// count requests and errors (micro's own counts, the handler being
// inline); after Run returns the service is gone.
func TestAdmissionIsAMicroService(t *testing.T) {
	s := newStack(t)
	s.tenant("covered")
	admitNC, _ := s.env.Connect(t)
	workerNC, workerJS := s.env.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := phonepolicy.New(ctx, phonepolicy.Deps{NC: workerNC, JS: workerJS, AdmitNC: admitNC},
		phonepolicy.Options{AllowLocalCustomerKeys: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	rpctest.CheckFor(t, 10*time.Second, w.Ready)

	info := rpctest.Info(t, s.env.NC, phonepolicy.ServiceName)
	if len(info.Endpoints) != 1 {
		t.Fatalf("INFO %+v", info)
	}
	if ep := info.Endpoints[0]; ep.Name != "admit" || ep.Subject != events.SubjectPhoneAdmitAll || ep.QueueGroup != phonepolicy.DefaultQueue || ep.Metadata["concurrency"] != "inline" {
		t.Fatalf("INFO endpoint %+v", ep)
	}
	if ping := rpctest.Ping(t, s.env.NC, phonepolicy.ServiceName); ping.Name != phonepolicy.ServiceName {
		t.Fatalf("PING %+v", ping)
	}

	for _, c := range []struct {
		tenant string
		body   any
		code   string
	}{
		{"covered", call("covered", "c1", "u1", true), ""},
		{"nobody", call("nobody", "c2", "u1", true), events.CallErrUnknownTenant},
		{"covered", call("globex", "c3", "u1", true), events.CallErrTenantMismatch},
	} {
		body, _ := json.Marshal(c.body)
		m, err := s.env.NC.RequestMsg(&nats.Msg{Subject: events.SubjectPhoneAdmit(c.tenant), Data: body}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var d events.CallDecision
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		if c.code == "" {
			if d.Error != nil || d.Decision != events.DecisionRecord || m.Header.Get(micro.ErrorCodeHeader) != "" {
				t.Fatalf("%s: reply %s headers %v", c.tenant, m.Data, m.Header)
			}
			continue
		}
		if d.Error == nil || d.Error.Code != c.code || m.Header.Get(micro.ErrorCodeHeader) != c.code || m.Header.Get(micro.ErrorHeader) != d.Error.Message {
			t.Fatalf("%s: reply %s headers %v, want %s", c.tenant, m.Data, m.Header, c.code)
		}
	}

	rpctest.AwaitStats(t, s.env.NC, phonepolicy.ServiceName, func(e *micro.EndpointStats, d rpc.Stats) error {
		if e.NumRequests != 3 || e.NumErrors != 2 || d.Requests != 3 || d.Errors != 2 ||
			d.ErrorsByCode[events.CallErrUnknownTenant] != 1 || d.ErrorsByCode[events.CallErrTenantMismatch] != 1 {
			return fmt.Errorf("STATS %s", rpctest.String(e, d))
		}
		return nil
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the deferred wait
	subj, _ := micro.ControlSubject(micro.PingVerb, phonepolicy.ServiceName, "")
	if _, err := s.env.NC.Request(subj, nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("PING after Run returned: %v, want no responders", err)
	}
}
