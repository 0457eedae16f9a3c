package azureemu

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The minimal Microsoft Entra ID the azidentity client-secret (and
// workload identity) flow needs, as MSAL for Go requests it with instance
// discovery disabled:
//
//	GET  /{tenant}/v2.0/.well-known/openid-configuration
//	     → {"issuer", "authorization_endpoint", "token_endpoint", ...}; MSAL
//	       requires all three and an issuer on the authority's host.
//	POST /{tenant}/oauth2/v2.0/token   (application/x-www-form-urlencoded)
//	     grant_type=client_credentials, client_id, scope="<resource>/.default
//	     openid offline_access profile", and client_secret — or
//	     client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
//	     with client_assertion (workload identity) — plus claims (CAE
//	     capabilities) which is ignored
//	     → {"token_type": "Bearer", "expires_in", "ext_expires_in", "access_token"}
//
// Errors are OAuth 2.0 error bodies with Entra's AADSTS codes:
// {"error": "invalid_client", "error_description": "AADSTS7000215: ...",
// "error_codes": [7000215]}.

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

func (e *Emulator) discovery(w http.ResponseWriter, tenant string) {
	if tenant != e.TenantID {
		oauthFail(w, http.StatusBadRequest, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	base := e.URL + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + "/v2.0",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              e.URL + "/" + tenant + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"tenant_region_scope":                   "EU",
	})
}

func (e *Emulator) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if tenant != e.TenantID {
		oauthFail(w, http.StatusBadRequest, "invalid_request", 90002,
			fmt.Sprintf("Tenant '%s' not found.", tenant))
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthFail(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must be application/x-www-form-urlencoded.")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "client_credentials":
		oauthFail(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type (the emulator supports client_credentials).")
		return
	case f.Get("client_id") != e.ClientID:
		oauthFail(w, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", f.Get("client_id"), tenant))
		return
	}
	switch {
	case f.Has("client_secret"):
		if subtle.ConstantTimeCompare([]byte(f.Get("client_secret")), []byte(e.ClientSecret)) != 1 {
			oauthFail(w, http.StatusUnauthorized, "invalid_client", 7000215,
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+e.ClientID+"'.")
			return
		}
	case f.Get("client_assertion_type") == jwtBearer:
		if subtle.ConstantTimeCompare([]byte(f.Get("client_assertion")), []byte(e.FederatedToken)) != 1 {
			oauthFail(w, http.StatusUnauthorized, "invalid_client", 700213,
				"No matching federated identity record found for presented assertion.")
			return
		}
	default:
		oauthFail(w, http.StatusUnauthorized, "invalid_client", 7000216,
			"'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	}
	var resources []string
	for _, s := range strings.Fields(f.Get("scope")) {
		switch s {
		case "openid", "offline_access", "profile":
			continue
		}
		resources = append(resources, s)
	}
	if len(resources) != 1 || (resources[0] != ResourceVault+"/.default" && resources[0] != ResourceHSM+"/.default") {
		oauthFail(w, http.StatusBadRequest, "invalid_scope", 1002012,
			fmt.Sprintf("The provided value for scope %q is not valid: the emulator issues tokens for %s/.default and %s/.default.", f.Get("scope"), ResourceVault, ResourceHSM))
		return
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := "kwemu." + base64.RawURLEncoding.EncodeToString(b)
	life := e.opts.tokenLifetime
	e.mu.Lock()
	e.tokens[tok] = tokenInfo{audience: strings.TrimSuffix(resources[0], "/.default"), expires: time.Now().Add(life)}
	e.issued++
	e.mu.Unlock()
	secs := int(life / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   tok,
	})
}

func oauthFail(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s", aadsts, desc),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          newGUID(),
		"correlation_id":    newGUID(),
	})
}
