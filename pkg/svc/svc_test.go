package svc_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/svc"
)

// NATSReady passes while the connection is up and fails once it is not.
func TestNATSReady(t *testing.T) {
	env := natstest.Start(t)
	nc, err := nats.Connect(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	check := svc.NATSReady(nc)
	if err := check(context.Background()); err != nil {
		t.Fatalf("connected: %v", err)
	}
	nc.Close()
	if err := check(context.Background()); err == nil {
		t.Fatal("closed connection reported ready")
	}
}
