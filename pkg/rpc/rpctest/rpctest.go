// Package rpctest asks a running rpc service what NATS micro says about it
// ($SRV.PING, $SRV.INFO, $SRV.STATS), for the tests of the services built
// on package rpc. Requests go to the service name's control subjects, so
// with several instances running the first answer is returned.
package rpctest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/keyward/keyward/pkg/rpc"
)

// Ping sends $SRV.PING.<name>.
func Ping(t testing.TB, nc *nats.Conn, name string) micro.Ping {
	t.Helper()
	return control[micro.Ping](t, nc, micro.PingVerb, name)
}

// Info sends $SRV.INFO.<name>.
func Info(t testing.TB, nc *nats.Conn, name string) micro.Info {
	t.Helper()
	return control[micro.Info](t, nc, micro.InfoVerb, name)
}

// Stats sends $SRV.STATS.<name>.
func Stats(t testing.TB, nc *nats.Conn, name string) micro.Stats {
	t.Helper()
	return control[micro.Stats](t, nc, micro.StatsVerb, name)
}

// EndpointStats returns the service's one endpoint's STATS: micro's counts
// and the rpc package's (its data).
func EndpointStats(t testing.TB, nc *nats.Conn, name string) (*micro.EndpointStats, rpc.Stats) {
	t.Helper()
	st := Stats(t, nc, name)
	if len(st.Endpoints) != 1 {
		t.Fatalf("$SRV.STATS.%s: %d endpoints, want 1", name, len(st.Endpoints))
	}
	var d rpc.Stats
	if err := json.Unmarshal(st.Endpoints[0].Data, &d); err != nil {
		t.Fatalf("$SRV.STATS.%s data %s: %v", name, st.Endpoints[0].Data, err)
	}
	return st.Endpoints[0], d
}

// AwaitStats polls the endpoint's STATS until check accepts them (answers
// are counted just after they are sent), failing the test after 10s with
// check's last error.
func AwaitStats(t testing.TB, nc *nats.Conn, name string, check func(*micro.EndpointStats, rpc.Stats) error) {
	t.Helper()
	CheckFor(t, 10*time.Second, func() error { return check(EndpointStats(t, nc, name)) })
}

// CheckFor polls f every few milliseconds until it returns nil, failing
// the test with f's last error after total.
func CheckFor(t testing.TB, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func control[T any](t testing.TB, nc *nats.Conn, verb micro.Verb, name string) T {
	t.Helper()
	subj, err := micro.ControlSubject(verb, name, "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(subj, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subj, err)
	}
	var v T
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("%s: %s: %v", subj, m.Data, err)
	}
	return v
}

// String formats stats for a failure message.
func String(e *micro.EndpointStats, d rpc.Stats) string {
	return fmt.Sprintf("micro requests=%d errors=%d; rpc %+v", e.NumRequests, e.NumErrors, d)
}
