package azureemu

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/kmstest"
)

// Resources (token audiences) of Key Vault and Managed HSM, as named in
// their authentication challenges.
const (
	ResourceVault = "https://vault.azure.net"
	ResourceHSM   = "https://managedhsm.azure.net"
)

// Emulator is an Azure Key Vault / Managed HSM data plane (wrapKey and
// unwrapKey only) and a minimal Microsoft Entra ID token service, on one
// TLS server. Every vault and Managed HSM is served at URL (key URIs carry
// ?endpoint=URL), so key names are unique across vaults.
type Emulator struct {
	// URL is the base URL, https://127.0.0.1:<port>: the ?endpoint= of the
	// key URIs and the authority host of the tenant.
	URL string
	// Server is the TLS server with its faults and request log.
	Server *kmstest.Server
	// TenantID, ClientID and ClientSecret are the one application the token
	// endpoint knows.
	TenantID, ClientID, ClientSecret string
	// FederatedToken is accepted as a client assertion for ClientID
	// (workload identity): write it to a file for
	// azurekv.WithWorkloadIdentity.
	FederatedToken string

	opts options

	mu   sync.Mutex
	keys map[string]*key // lower-case name → key
	// vaults is the vault host of every key name the emulator was told of:
	// created (and kept after DeleteKey) or named by MissingVaultKey and
	// MissingHSMKey. Every vault is served at URL, so the name is all a
	// request tells of its vault; the token audience a request needs (and
	// the resource its challenge names) follows from it, as a real vault's
	// follows from its host, whether or not the key exists.
	vaults     map[string]string // lower-case name → vault host
	tokens     map[string]tokenInfo
	challenges int // 401 answers to data-plane requests
	issued     int // tokens issued
}

type key struct {
	vault    string // host: <name>.vault.azure.net or <name>.managedhsm.azure.net
	name     string
	hsm      bool
	versions []*keyVersion // the last is current
}

type keyVersion struct {
	id      string // 32 lowercase hex digits
	enabled bool
	rsa     *rsa.PrivateKey // vault keys
	oct     []byte          // Managed HSM keys (32 bytes)
}

// resourceOf is the token audience of a vault host: Managed HSM's for
// <name>.managedhsm.azure.net, Key Vault's otherwise.
func resourceOf(host string) string {
	if azurekv.IsManagedHSM(host) {
		return ResourceHSM
	}
	return ResourceVault
}

func (k *key) kid(v *keyVersion) string {
	return "https://" + k.vault + "/keys/" + k.name + "/" + v.id
}

func (k *key) version(id string) *keyVersion {
	if id == "" {
		return k.versions[len(k.versions)-1]
	}
	for _, v := range k.versions {
		if v.id == id {
			return v
		}
	}
	return nil
}

type tokenInfo struct {
	audience string
	expires  time.Time
}

// Option configures Start.
type Option func(*options)

type options struct {
	scopeChallenge bool
	tokenLifetime  time.Duration
	addr           string
	stateFile      string
	tenantID       string
	clientID       string
	clientSecret   string
}

// WithScopeChallenge makes the bearer challenge name a scope
// (scope="https://vault.azure.net/.default") instead of a resource
// (resource="https://vault.azure.net"); Key Vault has used both and azkeys
// parses both.
func WithScopeChallenge() Option { return func(o *options) { o.scopeChallenge = true } }

// WithTokenLifetime sets the lifetime of issued tokens (default one hour).
func WithTokenLifetime(d time.Duration) Option { return func(o *options) { o.tokenLifetime = d } }

// WithAddr listens on addr (e.g. a fixed port for dev mode) instead of a
// free loopback port.
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// WithStateFile keeps the application and the keys (with their material) in
// a JSON file (mode 0600), loaded at Start and rewritten on every change, so
// a restarted emulator unwraps what it wrapped before. For keyward dev;
// never for real keys.
func WithStateFile(path string) Option { return func(o *options) { o.stateFile = path } }

// WithApplication fixes the tenant, client ID and client secret (default:
// random GUIDs and a random secret).
func WithApplication(tenantID, clientID, clientSecret string) Option {
	return func(o *options) { o.tenantID, o.clientID, o.clientSecret = tenantID, clientID, clientSecret }
}

// Start starts an emulator. Close it when done.
func Start(opts ...Option) (*Emulator, error) {
	o := options{tokenLifetime: time.Hour}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.tenantID == "" {
		o.tenantID = newGUID()
	}
	if o.clientID == "" {
		o.clientID = newGUID()
	}
	if o.clientSecret == "" {
		o.clientSecret = "kw~" + randomHex(20)
	}
	e := &Emulator{
		TenantID:       o.tenantID,
		ClientID:       o.clientID,
		ClientSecret:   o.clientSecret,
		FederatedToken: "eyJ.federated." + randomHex(24),
		opts:           o,
		keys:           map[string]*key{},
		vaults:         map[string]string{},
		tokens:         map[string]tokenInfo{},
	}
	if o.stateFile != "" {
		if err := e.loadState(); err != nil {
			return nil, err
		}
	}
	sopts := []kmstest.ServerOption{kmstest.WithTLS()}
	if o.addr != "" {
		sopts = append(sopts, kmstest.WithAddr(o.addr))
	}
	srv, err := kmstest.NewServer(e.handler(), Classify, renderer(e), sopts...)
	if err != nil {
		return nil, fmt.Errorf("azureemu: %w", err)
	}
	e.Server, e.URL = srv, srv.URL
	if err := e.saveState(); err != nil {
		srv.Close()
		return nil, err
	}
	return e, nil
}

// StartT starts an emulator closed at the end of the test.
func StartT(t testing.TB, opts ...Option) *Emulator {
	t.Helper()
	e, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// Close stops the server.
func (e *Emulator) Close() { e.Server.Close() }

var vaultNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{1,22}[a-z0-9])$`)

// CreateRSAKey creates an RSA 2048 key in the Key Vault <vault>.vault.azure.net
// and returns its key URI (with ?endpoint=URL). It panics on an invalid
// vault or key name, or a key name already used in any vault.
func (e *Emulator) CreateRSAKey(vault, name string) kms.KeyURI {
	return e.create(vault+".vault.azure.net", name, false)
}

// CreateOctKey creates a 256-bit oct-HSM key in the Managed HSM
// <hsm>.managedhsm.azure.net and returns its key URI (with ?endpoint=URL).
// It panics like CreateRSAKey.
func (e *Emulator) CreateOctKey(hsm, name string) kms.KeyURI {
	return e.create(hsm+".managedhsm.azure.net", name, true)
}

// ImportOctKey creates an oct-HSM key in the Managed HSM
// <hsm>.managedhsm.azure.net with the given version id (32 lowercase hex
// digits) and 32-byte material, as Managed HSM's key import (BYOK) would:
// for known-answer tests, whose ciphertexts must unwrap forever. It panics
// like CreateRSAKey, and on an invalid version or material.
func (e *Emulator) ImportOctKey(hsm, name, version string, material []byte) kms.KeyURI {
	if _, err := kms.ParseKeyURI("azurekv://" + hsm + ".managedhsm.azure.net/keys/" + name + "/" + version); err != nil || len(material) != 32 {
		panic(fmt.Sprintf("azureemu: ImportOctKey needs a 32-hex-digit version and 32 bytes of material (%v)", err))
	}
	u := e.create(hsm+".managedhsm.azure.net", name, true)
	e.mu.Lock()
	e.keys[strings.ToLower(name)].versions = []*keyVersion{{id: version, enabled: true, oct: append([]byte(nil), material...)}}
	e.mu.Unlock()
	e.mustSave()
	return u
}

func (e *Emulator) create(host, name string, hsm bool) kms.KeyURI {
	u := e.uri(host, name)
	v := newVersion(hsm)
	e.mu.Lock()
	if err := e.claimLocked(host, name); err != nil {
		e.mu.Unlock()
		panic(err.Error())
	}
	e.keys[strings.ToLower(name)] = &key{vault: host, name: name, hsm: hsm, versions: []*keyVersion{v}}
	e.mu.Unlock()
	e.mustSave()
	return u
}

// MissingVaultKey returns the URI of key name in the Key Vault
// <vault>.vault.azure.net, which does not exist (wrapKey and unwrapKey
// answer 404 KeyNotFound), and records that the name belongs to that
// vault: requests for it need a Key Vault token and are challenged with
// Key Vault's resource, as the real vault would challenge them. Creating
// the key later (in the same vault) is allowed. It panics like
// CreateRSAKey.
func (e *Emulator) MissingVaultKey(vault, name string) kms.KeyURI {
	return e.missing(vault+".vault.azure.net", name)
}

// MissingHSMKey is MissingVaultKey for the Managed HSM
// <hsm>.managedhsm.azure.net: requests for the missing key need a Managed
// HSM token. Use it (not a key URI written by hand) to name a missing
// Managed HSM key: a name the emulator was never told of is challenged as
// a Key Vault's (see the package documentation).
func (e *Emulator) MissingHSMKey(hsm, name string) kms.KeyURI {
	return e.missing(hsm+".managedhsm.azure.net", name)
}

func (e *Emulator) missing(host, name string) kms.KeyURI {
	u := e.uri(host, name)
	e.mu.Lock()
	err := e.claimLocked(host, name)
	e.mu.Unlock()
	if err != nil {
		panic(err.Error())
	}
	e.mustSave()
	return u
}

// uri is the key URI of name in the vault host; it panics on an invalid
// vault or key name.
func (e *Emulator) uri(host, name string) kms.KeyURI {
	vaultName, _, _ := strings.Cut(host, ".")
	if !vaultNameRe.MatchString(vaultName) {
		panic(fmt.Sprintf("azureemu: invalid vault name %q (3-24 lowercase letters, digits and '-')", vaultName))
	}
	u, err := kms.ParseKeyURI("azurekv://" + host + "/keys/" + name + "?endpoint=" + e.URL)
	if err != nil {
		panic(fmt.Sprintf("azureemu: %v", err))
	}
	return u
}

// claimLocked records that name belongs to the vault host. A name of an
// existing key, or one already told of in another vault, cannot be
// claimed: every vault is served at one URL, so key names are unique
// across vaults.
func (e *Emulator) claimLocked(host, name string) error {
	n := strings.ToLower(name)
	if k := e.keys[n]; k != nil {
		return fmt.Errorf("azureemu: key %q exists already (in %s): every vault is served at one URL, so key names are unique across vaults", name, k.vault)
	}
	if v, ok := e.vaults[n]; ok && !strings.EqualFold(v, host) {
		return fmt.Errorf("azureemu: key name %q belongs to %s already: every vault is served at one URL, so key names are unique across vaults", name, v)
	}
	e.vaults[n] = host
	return nil
}

// KeyURI returns the URI of an existing key (e.g. one loaded from the state
// file), and whether there is one.
func (e *Emulator) KeyURI(name string) (kms.KeyURI, bool) {
	e.mu.Lock()
	k := e.keys[strings.ToLower(name)]
	e.mu.Unlock()
	if k == nil {
		return kms.KeyURI{}, false
	}
	u, err := kms.ParseKeyURI("azurekv://" + k.vault + "/keys/" + k.name + "?endpoint=" + e.URL)
	return u, err == nil
}

func newVersion(hsm bool) *keyVersion {
	v := &keyVersion{id: randomHex(16), enabled: true}
	if hsm {
		v.oct = make([]byte, 32)
		_, _ = rand.Read(v.oct)
		return v
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("azureemu: generating an RSA key: %v", err))
	}
	v.rsa = k
	return v
}

// lookup returns the key named by a key URI; it panics if there is none
// (a test bug).
func (e *Emulator) lookup(u kms.KeyURI) *key {
	k := e.keys[strings.ToLower(u.KeyID)]
	if k == nil || !strings.EqualFold(k.vault, u.Vault) {
		panic(fmt.Sprintf("azureemu: no key %s", u.Unversioned()))
	}
	return k
}

// update runs fn on the key named by u under the lock. It panics if there
// is none (a test bug), after releasing the lock, so a test that recovers
// can go on using the emulator.
func (e *Emulator) update(u kms.KeyURI, fn func(k *key)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn(e.lookup(u))
}

// RotateKey adds a new current version to the key and returns its id.
func (e *Emulator) RotateKey(u kms.KeyURI) (version string) {
	var hsm bool
	e.update(u, func(k *key) { hsm = k.hsm })
	v := newVersion(hsm) // outside the lock: RSA generation is slow
	e.update(u, func(k *key) { k.versions = append(k.versions, v) })
	e.mustSave()
	return v.id
}

// DisableKey disables the version the URI pins, or every version of the
// key when it pins none: wrapKey and unwrapKey then answer 403 Forbidden
// with inner error KeyDisabled, as Key Vault does.
func (e *Emulator) DisableKey(u kms.KeyURI) { e.setEnabled(u, false) }

// EnableKey undoes DisableKey.
func (e *Emulator) EnableKey(u kms.KeyURI) { e.setEnabled(u, true) }

func (e *Emulator) setEnabled(u kms.KeyURI, on bool) {
	e.update(u, func(k *key) {
		for _, v := range k.versions {
			if u.Version == "" || v.id == u.Version {
				v.enabled = on
			}
		}
	})
	e.mustSave()
}

// DeleteKey deletes the key with all its versions: every operation then
// answers 404 KeyNotFound. The name stays its vault's: requests for it
// still need that vault's token.
func (e *Emulator) DeleteKey(u kms.KeyURI) {
	e.update(u, func(*key) { delete(e.keys, strings.ToLower(u.KeyID)) })
	e.mustSave()
}

// Challenges returns how many data-plane requests were answered 401 with a
// bearer challenge (requests without a token, or with a token the emulator
// did not issue, has expired or is for another resource than their vault's).
func (e *Emulator) Challenges() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.challenges
}

// TokensIssued returns how many access tokens the token endpoint issued.
func (e *Emulator) TokensIssued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.issued
}

// ClientOptions returns azcore options for a client of the emulator: its
// authority host (Cloud) and a transport trusting its certificate.
func (e *Emulator) ClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.URL + "/"},
		Transport: e.Server.Client(),
	}
}

// Credential returns the real azidentity client-secret credential of the
// emulator's application, against the emulator's authority (OIDC discovery
// and token endpoint served by the emulator; instance discovery off).
func (e *Emulator) Credential() (azcore.TokenCredential, error) {
	return azidentity.NewClientSecretCredential(e.TenantID, e.ClientID, e.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            e.ClientOptions(),
			DisableInstanceDiscovery: true,
		})
}

// Provider returns an azurekv.Provider authenticating with Credential and
// trusting the emulator's certificate; opts are applied after those (they
// must not name another credential).
func (e *Emulator) Provider(opts ...azurekv.Option) (*azurekv.Provider, error) {
	cred, err := e.Credential()
	if err != nil {
		return nil, err
	}
	base := []azurekv.Option{
		azurekv.WithCredential(cred),
		azurekv.WithClientOptions(azcore.ClientOptions{Transport: e.Server.Client()}),
	}
	return azurekv.New(append(base, opts...)...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newGUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
