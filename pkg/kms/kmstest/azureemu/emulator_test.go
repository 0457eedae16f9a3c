package azureemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
)

const apiVersion = "2025-07-01" // what azkeys v1.5.0 sends

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a answer) kvCode() (code, inner string) {
	e, _ := a.body["error"].(map[string]any)
	code, _ = e["code"].(string)
	if ie, ok := e["innererror"].(map[string]any); ok {
		inner, _ = ie["code"].(string)
	}
	return code, inner
}

func do(t *testing.T, e *Emulator, method, path string, header http.Header, body io.Reader) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
		}
	}
	return a
}

func form(t *testing.T, e *Emulator, v url.Values) answer {
	t.Helper()
	return do(t, e, http.MethodPost, "/"+e.TenantID+"/oauth2/v2.0/token",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(v.Encode()))
}

// token gets a token for resource from the emulator's token endpoint.
func token(t *testing.T, e *Emulator, resource string) string {
	t.Helper()
	a := form(t, e, url.Values{"grant_type": {"client_credentials"}, "client_id": {e.ClientID},
		"client_secret": {e.ClientSecret}, "scope": {resource + "/.default openid offline_access profile"}})
	tok, _ := a.body["access_token"].(string)
	if a.status != http.StatusOK || tok == "" || a.body["token_type"] != "Bearer" {
		t.Fatalf("token endpoint answered %d %v", a.status, a.body)
	}
	return tok
}

func keyOp(t *testing.T, e *Emulator, path, tok, alg string, value []byte) answer {
	t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	body, _ := json.Marshal(map[string]string{"alg": alg, "value": base64.RawURLEncoding.EncodeToString(value)})
	return do(t, e, http.MethodPost, path+"?api-version="+apiVersion, h, bytes.NewReader(body))
}

func resultValue(t *testing.T, a answer) []byte {
	t.Helper()
	s, _ := a.body["value"].(string)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if a.status != http.StatusOK || err != nil || len(b) == 0 {
		t.Fatalf("answer %d %v, want 200 with a base64url value", a.status, a.body)
	}
	return b
}

// The bearer challenge, exactly as azkeys' challenge policy parses it.
func TestChallengeHeader(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []Option
		hsm   bool
		param string
	}{
		{"vault, resource", nil, false, `resource="https://vault.azure.net"`},
		{"Managed HSM, resource", nil, true, `resource="https://managedhsm.azure.net"`},
		{"vault, scope", []Option{WithScopeChallenge()}, false, `scope="https://vault.azure.net/.default"`},
		{"Managed HSM, scope", []Option{WithScopeChallenge()}, true, `scope="https://managedhsm.azure.net/.default"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := StartT(t, tc.opts...)
			if tc.hsm {
				e.CreateOctKey("acme-hsm", "k")
			} else {
				e.CreateRSAKey("acme-kv", "k")
			}
			// azkeys sends the first request without a body or token.
			a := do(t, e, http.MethodPost, "/keys/k//wrapkey?api-version="+apiVersion, nil, nil)
			want := fmt.Sprintf(`Bearer authorization="%s/%s", %s`, e.URL, e.TenantID, tc.param)
			if got := a.header.Get("WWW-Authenticate"); a.status != http.StatusUnauthorized || got != want {
				t.Fatalf("answer %d, WWW-Authenticate %q; want 401, %q", a.status, got, want)
			}
			if code, _ := a.kvCode(); code != "Unauthorized" {
				t.Errorf("error code %q, want Unauthorized", code)
			}
			if e.Challenges() != 1 {
				t.Errorf("Challenges() = %d, want 1", e.Challenges())
			}
		})
	}
}

// A key the vault does not hold is challenged for its vault's resource,
// as a real vault's host decides it: a missing or deleted Managed HSM key
// wants a Managed HSM token, and answers 404 to one. A name the emulator
// was never told of takes either token.
func TestMissingKeyResource(t *testing.T) {
	e := StartT(t)
	deletedOct, deletedRSA := e.CreateOctKey("acme-hsm", "hsm-deleted"), e.CreateRSAKey("acme-kv", "kv-deleted")
	e.DeleteKey(deletedOct)
	e.DeleteKey(deletedRSA)
	e.MissingHSMKey("acme-hsm", "hsm-missing")
	e.MissingVaultKey("acme-kv", "kv-missing")
	vaultTok, hsmTok := token(t, e, ResourceVault), token(t, e, ResourceHSM)
	value := make([]byte, 32)
	for _, tc := range []struct {
		name     string
		resource string // "" = never told of
	}{
		{"hsm-missing", ResourceHSM},
		{"hsm-deleted", ResourceHSM},
		{"kv-missing", ResourceVault},
		{"kv-deleted", ResourceVault},
		{"never-named", ""},
	} {
		path := "/keys/" + tc.name + "/wrapkey"
		for _, c := range []struct {
			tok, audience string
		}{{"", ""}, {vaultTok, ResourceVault}, {hsmTok, ResourceHSM}} {
			a := keyOp(t, e, path, c.tok, "A256KW", value)
			code, _ := a.kvCode()
			switch {
			case c.tok != "" && (tc.resource == "" || c.audience == tc.resource):
				if a.status != http.StatusNotFound || code != "KeyNotFound" {
					t.Errorf("%s with a %s token: answered %d %v, want 404 KeyNotFound", tc.name, c.audience, a.status, a.body)
				}
			default:
				want := tc.resource
				if want == "" {
					want = ResourceVault
				}
				challenge := fmt.Sprintf(`Bearer authorization="%s/%s", resource="%s"`, e.URL, e.TenantID, want)
				if got := a.header.Get("WWW-Authenticate"); a.status != http.StatusUnauthorized || got != challenge {
					t.Errorf("%s with token %q: answered %d, WWW-Authenticate %q; want 401, %q", tc.name, c.audience, a.status, got, challenge)
				}
			}
		}
	}
	// A missing key can be created later in its vault, not in another.
	e.CreateOctKey("acme-hsm", "hsm-missing")
	if a := keyOp(t, e, "/keys/hsm-missing/wrapkey", hsmTok, "A256KW", value); a.status != http.StatusOK {
		t.Errorf("wrapkey after creating the missing key: %d %v", a.status, a.body)
	}
}

func TestDiscovery(t *testing.T) {
	e := StartT(t)
	a := do(t, e, http.MethodGet, "/"+e.TenantID+"/v2.0/.well-known/openid-configuration", nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("discovery answered %d %v", a.status, a.body)
	}
	base := e.URL + "/" + e.TenantID
	for field, want := range map[string]string{
		"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
	} {
		if a.body[field] != want {
			t.Errorf("%s = %v, want %s", field, a.body[field], want)
		}
	}
	a = do(t, e, http.MethodGet, "/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration", nil, nil)
	if a.status != http.StatusBadRequest || a.body["error"] != "invalid_tenant" {
		t.Errorf("discovery of an unknown tenant answered %d %v", a.status, a.body)
	}
}

func TestTokenEndpoint(t *testing.T) {
	e := StartT(t)
	good := func() url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {e.ClientID}, "client_secret": {e.ClientSecret},
			"scope": {ResourceVault + "/.default openid offline_access profile"}, "claims": {`{"access_token":{"xms_cc":{"values":["cp1"]}}}`}}
	}
	with := func(k, v string) url.Values { f := good(); f.Set(k, v); return f }
	without := func(k string) url.Values { f := good(); f.Del(k); return f }
	assertion := without("client_secret")
	assertion.Set("client_assertion_type", jwtBearer)
	assertion.Set("client_assertion", e.FederatedToken)
	badAssertion := without("client_secret")
	badAssertion.Set("client_assertion_type", jwtBearer)
	badAssertion.Set("client_assertion", "eyJ.other")
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		err    string
	}{
		{"client secret", good(), 200, ""},
		{"Managed HSM scope", with("scope", ResourceHSM+"/.default"), 200, ""},
		{"federated assertion", assertion, 200, ""},
		{"wrong secret", with("client_secret", "nope"), 401, "invalid_client"},
		{"unknown assertion", badAssertion, 401, "invalid_client"},
		{"no client credential", without("client_secret"), 401, "invalid_client"},
		{"unknown client", with("client_id", "00000000-0000-0000-0000-000000000000"), 400, "unauthorized_client"},
		{"password grant", with("grant_type", "password"), 400, "unsupported_grant_type"},
		{"Graph scope", with("scope", "https://graph.microsoft.com/.default"), 400, "invalid_scope"},
		{"two resources", with("scope", ResourceVault+"/.default "+ResourceHSM+"/.default"), 400, "invalid_scope"},
	} {
		a := form(t, e, tc.form)
		if a.status != tc.status || (tc.err != "" && a.body["error"] != tc.err) {
			t.Errorf("%s: answered %d %v; want %d %s", tc.name, a.status, a.body, tc.status, tc.err)
		}
		if tc.err != "" && !strings.HasPrefix(fmt.Sprint(a.body["error_description"]), "AADSTS") {
			t.Errorf("%s: error_description %v lacks an AADSTS code", tc.name, a.body["error_description"])
		}
	}
	if got := e.TokensIssued(); got != 3 {
		t.Errorf("TokensIssued() = %d, want 3", got)
	}
}

// Every data-plane request must carry a token the emulator issued, for the
// key's resource, unexpired.
func TestBearerTokenChecks(t *testing.T) {
	e := StartT(t, WithTokenLifetime(time.Hour))
	e.CreateRSAKey("acme-kv", "k")
	vaultTok, hsmTok := token(t, e, ResourceVault), token(t, e, ResourceHSM)
	value := make([]byte, 32)
	if a := keyOp(t, e, "/keys/k/wrapkey", vaultTok, "RSA-OAEP-256", value); a.status != http.StatusOK {
		t.Fatalf("wrapkey with a vault token answered %d %v", a.status, a.body)
	}
	// Change one character to another, away from the end: replacing the
	// last one with a fixed "A" left the token valid whenever it already
	// ended in "A" (1 in 64), and a last base64 character can carry bits a
	// decoder ignores.
	b := []byte(vaultTok)
	i := len(b) - 5
	if b[i] == '.' {
		i--
	}
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	flipped := string(b)
	for name, tok := range map[string]string{
		"Managed HSM token on a vault key": hsmTok,
		"token never issued":               "kwemu.bm90LWlzc3VlZA",
		"token with a flipped character":   flipped,
	} {
		a := keyOp(t, e, "/keys/k/wrapkey", tok, "RSA-OAEP-256", value)
		if a.status != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: answered %d %v, want 401 with a challenge", name, a.status, a.body)
		}
	}
	short := StartT(t, WithTokenLifetime(time.Millisecond))
	short.CreateRSAKey("acme-kv", "k")
	tok := token(t, short, ResourceVault)
	time.Sleep(5 * time.Millisecond)
	if a := keyOp(t, short, "/keys/k/wrapkey", tok, "RSA-OAEP-256", value); a.status != http.StatusUnauthorized {
		t.Errorf("expired token: answered %d %v, want 401", a.status, a.body)
	}
}

// Real RSA-OAEP-256 with the key's RSA 2048 key, real RFC 3394 with the oct
// key: what the emulator wraps, standard code unwraps, and vice versa.
func TestRealCryptography(t *testing.T) {
	e := StartT(t)
	e.CreateRSAKey("acme-kv", "r")
	e.CreateOctKey("acme-hsm", "o")
	vt, ht := token(t, e, ResourceVault), token(t, e, ResourceHSM)
	priv := e.keys["r"].versions[0].rsa
	kek := e.keys["o"].versions[0].oct
	if priv.N.BitLen() != 2048 || len(kek) != 32 {
		t.Fatalf("RSA key of %d bits, oct key of %d bytes; want 2048, 32", priv.N.BitLen(), len(kek))
	}
	value := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

	wrapped := resultValue(t, keyOp(t, e, "/keys/r/wrapkey", vt, "RSA-OAEP-256", value))
	if got, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped, nil); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("rsa.DecryptOAEP(emulator's wrap) = %q, %v", got, err)
	}
	local, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, value, nil)
	if got := resultValue(t, keyOp(t, e, "/keys/r/unwrapkey", vt, "RSA-OAEP-256", local)); !bytes.Equal(got, value) {
		t.Fatalf("emulator's unwrap of rsa.EncryptOAEP = %q", got)
	}

	wrapped = resultValue(t, keyOp(t, e, "/keys/o/wrapkey", ht, "A256KW", value))
	if want, _ := wrapKey(kek, value); !bytes.Equal(wrapped, want) || len(wrapped) != len(value)+8 {
		t.Fatalf("emulator's A256KW = %x, want %x", wrapped, want)
	}
	if got := resultValue(t, keyOp(t, e, "/keys/o/unwrapkey", ht, "A256KW", wrapped)); !bytes.Equal(got, value) {
		t.Fatalf("emulator's A256KW unwrap = %q", got)
	}
	a := keyOp(t, e, "/keys/o/wrapkey", ht, "A256KW", value)
	if kid := a.body["kid"].(string); kid != "https://acme-hsm.managedhsm.azure.net/keys/o/"+e.keys["o"].versions[0].id {
		t.Errorf("kid = %q", kid)
	}
}

func TestKeyOperationErrors(t *testing.T) {
	e := StartT(t)
	u := e.CreateRSAKey("acme-kv", "k")
	e.CreateOctKey("acme-hsm", "o")
	vt, ht := token(t, e, ResourceVault), token(t, e, ResourceHSM)
	v1 := e.keys["k"].versions[0].id
	v2 := e.RotateKey(u)
	value := make([]byte, 32)
	garbage := make([]byte, 256)
	_, _ = rand.Read(garbage)
	for _, tc := range []struct {
		name, path, tok, alg string
		value                []byte
		status               int
		code, inner          string
	}{
		{"current version, no segment", "/keys/k/wrapkey", vt, "RSA-OAEP-256", value, 200, "", ""},
		{"current version, empty segment", "/keys/k//wrapkey", vt, "RSA-OAEP-256", value, 200, "", ""},
		{"old version", "/keys/k/" + v1 + "/wrapkey", vt, "RSA-OAEP-256", value, 200, "", ""},
		{"key name is case-insensitive", "/keys/K/" + v2 + "/wrapkey", vt, "RSA-OAEP-256", value, 200, "", ""},
		{"unknown version", "/keys/k/0123456789abcdef0123456789abcdef/wrapkey", vt, "RSA-OAEP-256", value, 404, "KeyNotFound", ""},
		{"unknown key", "/keys/nope/wrapkey", vt, "RSA-OAEP-256", value, 404, "KeyNotFound", ""},
		{"RSA-OAEP on an RSA key", "/keys/k/wrapkey", vt, "RSA-OAEP", value, 400, "BadParameter", ""},
		{"A256KW on an RSA key", "/keys/k/wrapkey", vt, "A256KW", value, 400, "BadParameter", ""},
		{"RSA-OAEP-256 on an oct key", "/keys/o/wrapkey", ht, "RSA-OAEP-256", value, 400, "BadParameter", ""},
		{"value too long for RSA 2048", "/keys/k/wrapkey", vt, "RSA-OAEP-256", make([]byte, 191), 400, "BadParameter", ""},
		{"A256KW value not 8n", "/keys/o/wrapkey", ht, "A256KW", make([]byte, 20), 400, "BadParameter", ""},
		{"garbage to unwrap", "/keys/k/unwrapkey", vt, "RSA-OAEP-256", garbage, 400, "BadParameter", ""},
		{"garbage to A256KW unwrap", "/keys/o/unwrapkey", ht, "A256KW", garbage[:40], 400, "BadParameter", ""},
		{"empty value", "/keys/k/wrapkey", vt, "RSA-OAEP-256", nil, 400, "BadParameter", ""},
		{"encrypt is not served", "/keys/k/encrypt", vt, "RSA-OAEP-256", value, 404, "NotFound", ""},
		{"get key is not served", "/keys/k", vt, "", nil, 404, "NotFound", ""},
	} {
		a := keyOp(t, e, tc.path, tc.tok, tc.alg, tc.value)
		code, inner := a.kvCode()
		if a.status != tc.status || code != tc.code || inner != tc.inner {
			t.Errorf("%s: answered %d %s/%s %v; want %d %s/%s", tc.name, a.status, code, inner, a.body, tc.status, tc.code, tc.inner)
		}
	}
	h := http.Header{"Authorization": {"Bearer " + vt}, "Content-Type": {"application/json"}}
	if a := do(t, e, http.MethodPost, "/keys/k/wrapkey", h, strings.NewReader(`{"alg":"RSA-OAEP-256","value":"AAAA"}`)); a.status != 400 {
		t.Errorf("no api-version: answered %d %v", a.status, a.body)
	}
	if a := do(t, e, http.MethodGet, "/keys/k/wrapkey?api-version="+apiVersion, h, nil); a.status != http.StatusMethodNotAllowed {
		t.Errorf("GET wrapkey: answered %d", a.status)
	}
	if a := do(t, e, http.MethodPost, "/keys/k/wrapkey?api-version="+apiVersion, h, strings.NewReader(`{"alg":`)); a.status != 400 {
		t.Errorf("malformed JSON: answered %d", a.status)
	}

	// Disable one version, then all; delete.
	pinned := u
	pinned.Version = v1
	e.DisableKey(pinned)
	if code, inner := keyOp(t, e, "/keys/k/"+v1+"/wrapkey", vt, "RSA-OAEP-256", value).kvCode(); code != "Forbidden" || inner != "KeyDisabled" {
		t.Errorf("disabled version: %s/%s, want Forbidden/KeyDisabled", code, inner)
	}
	if a := keyOp(t, e, "/keys/k/wrapkey", vt, "RSA-OAEP-256", value); a.status != 200 {
		t.Errorf("current version after disabling an old one: %d %v", a.status, a.body)
	}
	e.DisableKey(u)
	if a := keyOp(t, e, "/keys/k/unwrapkey", vt, "RSA-OAEP-256", garbage); a.status != 403 {
		t.Errorf("disabled key, unwrap: %d %v", a.status, a.body)
	}
	e.EnableKey(u)
	e.DeleteKey(u)
	if a := keyOp(t, e, "/keys/k/wrapkey", vt, "RSA-OAEP-256", value); a.status != 404 {
		t.Errorf("deleted key: %d %v", a.status, a.body)
	}
}

func TestClassify(t *testing.T) {
	for path, want := range map[string][2]string{
		"/keys/k/wrapkey":                          {OpWrapKey, "k"},
		"/keys/k//wrapkey":                         {OpWrapKey, "k"},
		"/keys/k/v/unwrapkey":                      {OpUnwrapKey, "k"},
		"/keys/k/v/UnwrapKey":                      {OpUnwrapKey, "k"},
		"/t/oauth2/v2.0/token":                     {OpToken, "t"},
		"/t/v2.0/.well-known/openid-configuration": {OpDiscovery, "t"},
		"/keys/k":                                  {OpUnknown, ""},
		"/keys/k/v/encrypt":                        {OpUnknown, ""},
		"/keys//wrapkey":                           {OpUnknown, ""},
		"/keys/k/v/x/wrapkey":                      {OpUnknown, ""},
		"/secrets/s":                               {OpUnknown, ""},
	} {
		r := httptest.NewRequest(http.MethodPost, "https://127.0.0.1"+path, nil)
		if op, key := Classify(r, nil); op != want[0] || key != want[1] {
			t.Errorf("Classify(%s) = %s, %s; want %s, %s", path, op, key, want[0], want[1])
		}
	}
}

func TestRenderer(t *testing.T) {
	e := StartT(t)
	e.CreateRSAKey("acme-kv", "k")
	vt := token(t, e, ResourceVault)
	for _, tc := range []struct {
		fault  kmstest.Fault
		status int
		code   string
	}{
		{kmstest.FaultThrottle, 429, "Throttled"},
		{kmstest.FaultServerError, 503, "ServiceUnavailable"},
	} {
		e.Server.Faults.Set(tc.fault)
		a := keyOp(t, e, "/keys/k/wrapkey", vt, "RSA-OAEP-256", make([]byte, 32))
		if code, _ := a.kvCode(); a.status != tc.status || code != tc.code {
			t.Errorf("%v: answered %d %s", tc.fault, a.status, code)
		}
		if tc.fault == kmstest.FaultThrottle && a.header.Get("Retry-After") != "1" {
			t.Errorf("throttled answer without Retry-After: %v", a.header)
		}
	}
	e.Server.Faults.Set(kmstest.FaultNone)
	e.Server.Faults.Deny(OpUnwrapKey)
	a := keyOp(t, e, "/keys/k/unwrapkey", vt, "RSA-OAEP-256", make([]byte, 256))
	if code, inner := a.kvCode(); a.status != 403 || code != "Forbidden" || inner != "AccessDenied" {
		t.Errorf("denied unwrapKey: answered %d %s/%s", a.status, code, inner)
	}
	if msg := fmt.Sprint(a.body); !strings.Contains(msg, "unwrapKey permission") {
		t.Errorf("denied message %q does not name the permission", msg)
	}
	if a := keyOp(t, e, "/keys/k/wrapkey", vt, "RSA-OAEP-256", make([]byte, 32)); a.status != 200 {
		t.Errorf("wrapKey with only unwrapKey denied: %d", a.status)
	}
}

func TestCreatePanics(t *testing.T) {
	e := StartT(t)
	e.CreateRSAKey("acme-kv", "k")
	for name, fn := range map[string]func(){
		"same name in another vault": func() { e.CreateOctKey("acme-hsm", "K") },
		"existing key named missing": func() { e.MissingVaultKey("acme-kv", "k") },
		"missing name in two vaults": func() { e.MissingVaultKey("acme-kv", "m"); e.MissingHSMKey("acme-hsm", "m") },
		"missing name created elsewhere": func() {
			e.MissingHSMKey("acme-hsm", "n")
			e.CreateRSAKey("acme-kv", "n")
		},
		"invalid vault name":      func() { e.CreateRSAKey("Acme_KV", "x") },
		"invalid key name":        func() { e.CreateRSAKey("acme-kv", "x y") },
		"rotating an unknown key": func() { e.RotateKey(kms.MustParseKeyURI("azurekv://acme-kv.vault.azure.net/keys/nope")) },
		"importing bad material":  func() { e.ImportOctKey("acme-hsm", "i", "0123456789abcdef0123456789abcdef", []byte{1}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestStateFileSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "azure.json")
	e1, err := Start(WithStateFile(file))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := e1.CreateRSAKey("demo-vault", "rsa-key")
	octKey := e1.CreateOctKey("demo-hsm", "oct-key")
	e1.MissingHSMKey("demo-hsm", "gone")
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	p1, err := e1.Provider()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := p1.GenerateDataKey(ctx, rsaKey, ec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p1.GenerateDataKey(ctx, octKey, ec)
	if err != nil {
		t.Fatal(err)
	}
	addr := e1.Server.Addr
	e1.Close()
	e2, err := Start(WithStateFile(file), WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if u, ok := e2.KeyURI("rsa-key"); !ok || u != rsaKey {
		t.Fatalf("KeyURI after restart = %v %v, want %v", u, ok, rsaKey)
	}
	// The vault of a missing key's name survives too.
	if got := do(t, e2, http.MethodPost, "/keys/gone//wrapkey?api-version="+apiVersion, nil, nil).header.Get("WWW-Authenticate"); !strings.Contains(got, ResourceHSM) {
		t.Errorf("challenge for a missing Managed HSM key after restart: %q, want resource %s", got, ResourceHSM)
	}
	p2, err := e2.Provider()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key kms.KeyURI
		dk  *kms.DataKey
	}{{rsaKey, a}, {octKey, b}} {
		back, err := p2.Decrypt(ctx, c.key, c.dk.Ciphertext, ec)
		if err != nil || !bytes.Equal(back.Bytes(), c.dk.Plaintext.Bytes()) {
			t.Fatalf("unwrap after restart (%s): %v", c.key.KeyID, err)
		}
	}
}
