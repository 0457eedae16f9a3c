package keystatus_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

func TestCacheFollowsTheBucket(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	kv, err := env.JS.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		t.Fatal(err)
	}
	const uri = "awskms://alias/acme?region=eu-west-2"
	if err := keystatus.Put(ctx, kv, keystatus.Record{TenantID: "acme", KeyURI: uri, Status: events.KeyStatusAvailable}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "acme.garbage", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	c, err := keystatus.NewCache(ctx, kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	changes := make(chan keystatus.Record, 4)
	c.OnChange(func(r keystatus.Record) { changes <- r })
	select {
	case <-c.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("cache never became ready")
	}
	if got := c.Status("acme", uri); got != events.KeyStatusAvailable {
		t.Fatalf("Status = %q, want available", got)
	}
	if got := c.Status("globex", uri); got != events.KeyStatusUnknown {
		t.Fatalf("another tenant's key status = %q, want unknown", got)
	}
	if err := keystatus.Put(ctx, kv, keystatus.Record{TenantID: "acme", KeyURI: uri, Status: events.KeyStatusRevoked, Previous: events.KeyStatusAvailable, Reason: "key_disabled"}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-changes:
		if r.Status != events.KeyStatusRevoked || r.KeyURI != uri {
			t.Fatalf("change = %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change notification")
	}
	if got := c.Status("acme", uri); got != events.KeyStatusRevoked {
		t.Fatalf("Status after change = %q", got)
	}
	if err := kv.Delete(ctx, keystatus.Key("acme", uri)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-changes:
		if r.Status != events.KeyStatusUnknown {
			t.Fatalf("delete notified as %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delete notification")
	}
	if err := keystatus.Put(ctx, kv, keystatus.Record{TenantID: "Bad.Tenant", KeyURI: uri, Status: events.KeyStatusRevoked}); err == nil {
		t.Fatal("Put accepted an invalid tenant id")
	}
}
