package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// RequestInfoHeader is the header nats-server writes on a request that
// crosses a service import with share: the requester's account, user key,
// credential name and tags. The server replaces any value a client sent.
const RequestInfoHeader = "Nats-Request-Info"

// Caller is the identity behind a request, as the NATS server
// authenticated it.
type Caller struct {
	// Account is the requester's account (its public key in operator mode).
	Account string
	// User is the requester's user nkey (public key).
	User string
	// Name is the name in the requester's credential (Identity.Name).
	Name string
	// Role, Tenant, Services and Purposes come from the credential's tags.
	Role     Role
	Tenant   string
	Services []string
	Purposes []string
}

// ErrNoCaller: the request carries no server-set identity (it did not come
// through the service import, or the server runs without authentication).
var ErrNoCaller = errors.New("no caller identity on the request")

// clientInfo is the part of nats-server's ClientInfo a service reads. Only
// server-verified fields: name_tag is the JWT's name (name is the
// connection name the client chose, so it is not read).
type clientInfo struct {
	Account string   `json:"acc"`
	User    string   `json:"user"`
	NameTag string   `json:"name_tag"`
	Tags    []string `json:"tags"`
}

// CallerFrom reads the caller from a request's headers. It returns
// ErrNoCaller when the header is missing, and an error when it does not
// parse or names no user.
func CallerFrom(h nats.Header) (Caller, error) {
	raw := h.Get(RequestInfoHeader)
	if raw == "" {
		return Caller{}, ErrNoCaller
	}
	var ci clientInfo
	if err := json.Unmarshal([]byte(raw), &ci); err != nil {
		return Caller{}, fmt.Errorf("%s: %w", RequestInfoHeader, err)
	}
	if ci.User == "" {
		return Caller{}, fmt.Errorf("%w: %s names no user (is the service import shared?)", ErrNoCaller, RequestInfoHeader)
	}
	c := Caller{Account: ci.Account, User: ci.User, Name: ci.NameTag}
	for _, t := range ci.Tags {
		switch {
		case strings.HasPrefix(t, TagRole):
			c.Role = Role(strings.TrimPrefix(t, TagRole))
		case strings.HasPrefix(t, TagTenant):
			c.Tenant = strings.TrimPrefix(t, TagTenant)
		case strings.HasPrefix(t, TagService):
			c.Services = append(c.Services, strings.TrimPrefix(t, TagService))
		case strings.HasPrefix(t, TagPurpose):
			c.Purposes = append(c.Purposes, strings.TrimPrefix(t, TagPurpose))
		}
	}
	return c, nil
}

// MayService reports whether the caller's scope covers service.
func (c Caller) MayService(service string) bool { return inScope(c.Services, service) }

// MayPurpose reports whether the caller's scope covers purpose.
func (c Caller) MayPurpose(purpose string) bool { return inScope(c.Purposes, purpose) }

func inScope(scope []string, v string) bool {
	for _, s := range scope {
		if s == "*" || s == v {
			return true
		}
	}
	return false
}

// String names the caller for logs and refusals (no secrets: names and
// public keys only).
func (c Caller) String() string {
	if c.Name != "" {
		return fmt.Sprintf("%s (%s)", c.Name, c.Role)
	}
	return c.User
}
