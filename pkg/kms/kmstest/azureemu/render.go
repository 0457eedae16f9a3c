package azureemu

import (
	"fmt"
	"net/http"

	"github.com/keyward/keyward/pkg/kms/kmstest"
)

// Renderer writes Key Vault's error responses for the kmstest faults.
type Renderer struct{ e *Emulator }

// renderer is the Renderer of an emulator.
func renderer(e *Emulator) Renderer { return Renderer{e} }

var _ kmstest.Renderer = Renderer{}

// Throttled answers 429 with Retry-After, as Key Vault does when a vault's
// request limit is reached.
func (Renderer) Throttled(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	kvFail(w, http.StatusTooManyRequests, "Throttled",
		"", "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached")
}

// ServerError answers 503 Service Unavailable.
func (Renderer) ServerError(w http.ResponseWriter) {
	kvFail(w, http.StatusServiceUnavailable, "ServiceUnavailable", "", "The service is temporarily unavailable. Please retry later.")
}

// Denied answers 403 Forbidden with inner error AccessDenied, as a vault
// access policy (or role assignment) lacking the operation's permission
// would.
func (r Renderer) Denied(w http.ResponseWriter, op string) {
	perm := map[string]string{OpWrapKey: "wrapKey", OpUnwrapKey: "unwrapKey"}[op]
	if perm == "" {
		perm = op
	}
	clientID := ""
	if r.e != nil {
		clientID = r.e.ClientID
	}
	kvFail(w, http.StatusForbidden, "Forbidden", "AccessDenied",
		fmt.Sprintf("The user, group or application 'appid=%s' does not have keys %s permission on this key vault. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287", clientID, perm))
}
