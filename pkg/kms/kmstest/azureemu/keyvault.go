package azureemu

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Operation names in the request log (kmstest.Request.Op).
const (
	OpWrapKey   = "WrapKey"
	OpUnwrapKey = "UnwrapKey"
	OpToken     = "Token"     // Microsoft Entra ID token endpoint
	OpDiscovery = "Discovery" // OpenID Connect discovery
	OpUnknown   = "Unknown"   // anything else (answered 404 or 405)
)

// route is a parsed request path.
type route struct {
	op      string
	tenant  string // OpToken, OpDiscovery
	name    string // key operations
	version string // key operations; "" = current
}

// parseRoute recognises the emulator's paths. Key Vault's are
// /keys/{name}/{version}/{wrapkey|unwrapkey} and, with the current version,
// /keys/{name}/{wrapkey|unwrapkey} or /keys/{name}//{...} (azkeys sends the
// empty version as an empty path segment).
func parseRoute(path string) route {
	if rest, ok := strings.CutPrefix(path, "/keys/"); ok {
		parts := strings.Split(rest, "/")
		var r route
		switch len(parts) {
		case 2:
			r = route{name: parts[0]}
		case 3:
			r = route{name: parts[0], version: parts[1]}
		default:
			return route{op: OpUnknown}
		}
		switch strings.ToLower(parts[len(parts)-1]) {
		case "wrapkey":
			r.op = OpWrapKey
		case "unwrapkey":
			r.op = OpUnwrapKey
		default:
			return route{op: OpUnknown}
		}
		if r.name == "" {
			return route{op: OpUnknown}
		}
		return r
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token":
		return route{op: OpToken, tenant: parts[0]}
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration":
		return route{op: OpDiscovery, tenant: parts[0]}
	}
	return route{op: OpUnknown}
}

// Classify names the operation of a request for the request log and the
// faults: "WrapKey" and "UnwrapKey" (with the key name) for the data plane,
// "Token" and "Discovery" (with the tenant) for Microsoft Entra ID, so
// least-privilege assertions can tell them apart.
func Classify(r *http.Request, _ []byte) (op, keyID string) {
	rt := parseRoute(r.URL.Path)
	switch rt.op {
	case OpToken, OpDiscovery:
		return rt.op, rt.tenant
	case OpUnknown:
		return rt.op, ""
	}
	return rt.op, rt.name
}

func (e *Emulator) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := parseRoute(r.URL.Path)
		switch rt.op {
		case OpDiscovery:
			if r.Method != http.MethodGet {
				kvFail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "", "use GET")
				return
			}
			e.discovery(w, rt.tenant)
		case OpToken:
			if r.Method != http.MethodPost {
				kvFail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "", "use POST")
				return
			}
			e.token(w, r, rt.tenant)
		case OpWrapKey, OpUnwrapKey:
			if r.Method != http.MethodPost {
				kvFail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "", "use POST")
				return
			}
			e.keyOperation(w, r, rt)
		default:
			kvFail(w, http.StatusNotFound, "NotFound", "", "The emulator serves only wrapKey and unwrapKey (and the token service).")
		}
	})
}

// keyOperation serves wrapkey and unwrapkey: bearer token, api-version, key
// and version, enabled, algorithm for the key type, value; then real
// RSA-OAEP-256 (RSA 2048) or AES key wrap (oct, 256-bit).
func (e *Emulator) keyOperation(w http.ResponseWriter, r *http.Request, rt route) {
	e.mu.Lock()
	k := e.keys[strings.ToLower(rt.name)]
	// The audience the request needs is its vault's, key or no key, as a
	// real Managed HSM challenges for its resource even for a key it does
	// not hold (see "The bearer challenge" in the package documentation).
	// A name the emulator was never told of names no vault: a token for
	// either resource is good for its 404.
	resources := []string{ResourceVault, ResourceHSM}
	if host, ok := e.vaults[strings.ToLower(rt.name)]; ok {
		resources = []string{resourceOf(host)}
	}
	if !e.authorizedLocked(w, r, resources) {
		e.mu.Unlock()
		return
	}
	var v *keyVersion
	var kid string
	if k != nil {
		if v = k.version(rt.version); v != nil {
			kid = k.kid(v)
		}
	}
	enabled := v != nil && v.enabled
	e.mu.Unlock()

	kvOp := map[string]string{OpWrapKey: "wrapKey", OpUnwrapKey: "unwrapKey"}[rt.op]
	switch {
	case r.URL.Query().Get("api-version") == "":
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The 'api-version' query parameter is missing.")
		return
	case k == nil:
		kvFail(w, http.StatusNotFound, "KeyNotFound", "", fmt.Sprintf("A key with (name/id) %s was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command.", rt.name))
		return
	case v == nil:
		kvFail(w, http.StatusNotFound, "KeyNotFound", "", fmt.Sprintf("A key with (name/id) %s/%s was not found in this key vault.", rt.name, rt.version))
		return
	case !enabled:
		kvFail(w, http.StatusForbidden, "Forbidden", "KeyDisabled", fmt.Sprintf("Operation %s is not allowed on a disabled key.", kvOp))
		return
	}
	var req struct {
		Alg   string `json:"alg"`
		Value string `json:"value"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Alg == "" {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "The request body must be a JSON object with 'alg' and 'value'.")
		return
	}
	value, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(req.Value, "="))
	if err != nil || len(value) == 0 {
		kvFail(w, http.StatusBadRequest, "BadParameter", "", "'value' must be non-empty base64url.")
		return
	}
	defer clear(value)
	out, status, msg := e.crypt(rt.op, v, req.Alg, value)
	if status != http.StatusOK {
		kvFail(w, status, "BadParameter", "", msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"kid": kid, "value": base64.RawURLEncoding.EncodeToString(out)})
	clear(out)
}

// crypt runs the operation; a refused algorithm or value is 400.
func (e *Emulator) crypt(op string, v *keyVersion, alg string, value []byte) (out []byte, status int, msg string) {
	switch {
	case v.rsa != nil && alg == "RSA-OAEP-256":
		var err error
		if op == OpWrapKey {
			out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &v.rsa.PublicKey, value, nil)
		} else {
			out, err = rsa.DecryptOAEP(sha256.New(), nil, v.rsa, value, nil)
		}
		if err != nil {
			return nil, http.StatusBadRequest, "The parameter is incorrect: the value could not be " + map[string]string{OpWrapKey: "wrapped", OpUnwrapKey: "unwrapped"}[op] + " with RSA-OAEP-256."
		}
		return out, http.StatusOK, ""
	case v.oct != nil && alg == "A256KW":
		var err error
		if op == OpWrapKey {
			out, err = wrapKey(v.oct, value)
		} else {
			out, err = unwrapKey(v.oct, value)
		}
		if err != nil {
			return nil, http.StatusBadRequest, "The parameter is incorrect: the value could not be " + map[string]string{OpWrapKey: "wrapped", OpUnwrapKey: "unwrapped"}[op] + " with A256KW."
		}
		return out, http.StatusOK, ""
	case v.rsa != nil:
		return nil, http.StatusBadRequest, fmt.Sprintf("Algorithm %q is not supported for RSA keys by the emulator (use RSA-OAEP-256).", alg)
	default:
		return nil, http.StatusBadRequest, fmt.Sprintf("Algorithm %q is not supported for oct-HSM keys by the emulator (use A256KW).", alg)
	}
}

// authorizedLocked checks the bearer token: present, issued by the
// emulator's token endpoint, unexpired and for one of resources. Otherwise
// it answers 401 with the challenge azkeys expects, naming the first:
//
//	WWW-Authenticate: Bearer authorization="<URL>/<tenant>", resource="<resource>"
//
// (or scope="<resource>/.default" with WithScopeChallenge).
func (e *Emulator) authorizedLocked(w http.ResponseWriter, r *http.Request, resources []string) bool {
	resource := resources[0]
	authz := r.Header.Get("Authorization")
	tok, bearer := strings.CutPrefix(authz, "Bearer ")
	var why string
	switch info, ok := e.tokens[tok]; {
	case authz == "":
		why = "AKV10000: Request is missing a Bearer or PoP token."
	case !bearer || !ok:
		why = "AKV10022: Invalid token: not issued by this tenant's token service."
	case time.Now().After(info.expires):
		why = "AKV10022: Invalid token: the token has expired."
	case !slices.Contains(resources, info.audience):
		why = fmt.Sprintf("AKV10022: Invalid audience. Expected %s, found: %s.", resource, info.audience)
	default:
		return true
	}
	e.challenges++
	param := fmt.Sprintf("resource=%q", resource)
	if e.opts.scopeChallenge {
		param = fmt.Sprintf("scope=%q", resource+"/.default")
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer authorization=%q, %s", e.URL+"/"+e.TenantID, param))
	kvFail(w, http.StatusUnauthorized, "Unauthorized", "", why)
	return false
}

// kvFail writes Key Vault's error body: {"error": {"code", "message",
// "innererror": {"code"}}}.
func kvFail(w http.ResponseWriter, status int, code, inner, msg string) {
	type innerError struct {
		Code string `json:"code"`
	}
	type kvError struct {
		Code       string      `json:"code"`
		Message    string      `json:"message"`
		InnerError *innerError `json:"innererror,omitempty"`
	}
	e := kvError{Code: code, Message: msg}
	if inner != "" {
		e.InnerError = &innerError{Code: inner}
	}
	writeJSON(w, status, map[string]kvError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
