package enroll

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
)

// The caller of TenantChanged comes from the server-set Nats-Request-Info;
// without one (no authentication) it is empty.
func TestChangedByFromRequestInfo(t *testing.T) {
	h := nats.Header{}
	h.Set("Nats-Request-Info", `{"acc":"AACME","user":"UA","name_tag":"admin-acme","tags":["keyward-role:tenant-admin","keyward-tenant:acme"]}`)
	got := callerOf(withCaller(context.Background(), h))
	want := events.ChangedBy{Name: "admin-acme", User: "UA", Account: "AACME", Role: "tenant-admin"}
	if got != want {
		t.Errorf("changed_by %+v, want %+v", got, want)
	}
	if got := callerOf(withCaller(context.Background(), nats.Header{})); got != (events.ChangedBy{}) {
		t.Errorf("without a caller %+v", got)
	}
}
