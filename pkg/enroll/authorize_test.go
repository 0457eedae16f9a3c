package enroll

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// authorizeCaller, as a unit: the caller comes from the server-set
// Nats-Request-Info only (its tags), an operator or the tenant's own admin
// may change the tenant, anyone else is refused not_authorized. (Against a
// real server the permission matrix already stops a tenant admin at
// another tenant's subject; cmd/keyward/cli TestTenantAdminIsScopedToItsTenant.)
func TestAuthorizeCaller(t *testing.T) {
	s := &Server{authorize: true}
	req := func(info string) nats.Header {
		h := nats.Header{}
		if info != "" {
			h.Set("Nats-Request-Info", info)
		}
		return h
	}
	for _, tc := range []struct {
		name, info string
		allowed    bool
	}{
		{"operator", `{"user":"UOP","name_tag":"operator","tags":["keyward-role:operator"]}`, true},
		{"its admin", `{"user":"UA","name_tag":"admin-acme","tags":["keyward-role:tenant-admin","keyward-tenant:acme"]}`, true},
		{"another tenant's admin", `{"user":"UB","name_tag":"admin-globex","tags":["keyward-role:tenant-admin","keyward-tenant:globex"]}`, false},
		{"a reader", `{"user":"UR","name_tag":"reader","tags":["keyward-role:reader"]}`, false},
		{"no identity", ``, false},
		{"no user", `{"acc":"A"}`, false},
		{"garbage", `{`, false},
	} {
		resp := s.authorizeCaller(req(tc.info), "acme")
		if tc.allowed && resp != nil {
			t.Errorf("%s: refused %+v", tc.name, resp)
		}
		if !tc.allowed && (resp == nil || resp.Error == nil || resp.Error.Code != CodeNotAuthorized) {
			t.Errorf("%s: %+v, want %s", tc.name, resp, CodeNotAuthorized)
		}
	}
	if resp := (&Server{}).authorizeCaller(req(""), "acme"); resp != nil {
		t.Errorf("with authorisation off: %+v", resp)
	}
}
