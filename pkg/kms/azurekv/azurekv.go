package azurekv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/pkg/kms"
)

// The wrapping algorithms the provider uses (see the package documentation).
const (
	// AlgorithmRSAOAEP256 wraps with RSA-OAEP using SHA-256 and MGF1-SHA-256:
	// the default for Key Vault keys (*.vault.azure.net and sovereign
	// equivalents), which are RSA or RSA-HSM keys.
	AlgorithmRSAOAEP256 = azkeys.EncryptionAlgorithmRSAOAEP256
	// AlgorithmA256KW wraps with AES-256 key wrap (RFC 3394): the default for
	// Managed HSM keys (*.managedhsm.azure.net and sovereign equivalents),
	// which are oct-HSM keys.
	AlgorithmA256KW = azkeys.EncryptionAlgorithmA256KW
)

// Defaults of the SDK retry budget. Keyward's own retry layer is JetStream
// redelivery (with backoff computed from the delivery count), so the SDK
// retries at most once, quickly, and never sleeps through a long
// Retry-After inside a call bounded by kms.Client's per-call timeout
// (500 ms by default): a retry still waiting when that timeout ends would
// turn a throttled call into an endpoint_unreachable one, which counts
// against the endpoint's circuit breaker.
const (
	DefaultMaxRetries    = 1
	defaultRetryDelay    = 100 * time.Millisecond
	defaultMaxRetryDelay = 200 * time.Millisecond
)

// The message wrapped by Key Vault is
//
//	random(16) || plaintext || SHA-256(ec.Canonical())
//
// The random prefix makes wraps of the same plaintext distinct (AES key
// wrap is deterministic); the digest binds the encryption context.
const (
	nonceSize  = 16
	digestSize = sha256.Size
)

// Provider wraps and unwraps Keyward seeds with keys in Azure Key Vault and
// Managed HSM (azurekv:// key URIs). It calls only wrapKey and unwrapKey. It
// is safe for concurrent use.
type Provider struct {
	cred azcore.TokenCredential
	co   azcore.ClientOptions
	alg  azkeys.EncryptionAlgorithm // "" = chosen by vault kind

	mu      sync.Mutex
	clients map[clientKey]*azkeys.Client
}

var _ kms.Provider = (*Provider)(nil)

type clientKey struct{ vaultURL, vault string }

// Option configures New.
type Option func(*config)

type config struct {
	credSources []string // options that chose a credential; exactly one is allowed
	build       func(co azcore.ClientOptions, c *config) (azcore.TokenCredential, error)

	co                 azcore.ClientOptions
	maxRetries         int
	alg                azkeys.EncryptionAlgorithm
	allowedTenants     []string
	tenantsSet         bool
	disableInstanceDis bool
}

// WithCredential makes the provider authenticate with cred (any
// azcore.TokenCredential, e.g. from azidentity). Exactly one of
// WithCredential, WithClientSecret, WithManagedIdentity and
// WithWorkloadIdentity must be given.
func WithCredential(cred azcore.TokenCredential) Option {
	return func(c *config) {
		c.credSources = append(c.credSources, "WithCredential")
		c.build = func(azcore.ClientOptions, *config) (azcore.TokenCredential, error) {
			if cred == nil {
				return nil, errors.New("WithCredential(nil)")
			}
			return cred, nil
		}
	}
}

// WithClientSecret authenticates as a Microsoft Entra application (service
// principal) with a client secret (azidentity.NewClientSecretCredential).
// The credential uses the WithClientOptions transport and cloud.
func WithClientSecret(tenantID, clientID, secret string) Option {
	return func(c *config) {
		c.credSources = append(c.credSources, "WithClientSecret")
		c.build = func(co azcore.ClientOptions, c *config) (azcore.TokenCredential, error) {
			if tenantID == "" || clientID == "" || secret == "" {
				return nil, errors.New("WithClientSecret needs a tenant ID, a client ID and a secret")
			}
			return azidentity.NewClientSecretCredential(tenantID, clientID, secret, &azidentity.ClientSecretCredentialOptions{
				ClientOptions:              co,
				AdditionallyAllowedTenants: c.tenants(),
				DisableInstanceDiscovery:   c.disableInstanceDis,
			})
		}
	}
}

// WithManagedIdentity authenticates as the managed identity of the Azure
// host (azidentity.NewManagedIdentityCredential): the system-assigned
// identity when clientID is empty, else the user-assigned identity with that
// client ID. Managed identities cannot reach vaults in other tenants.
func WithManagedIdentity(clientID string) Option {
	return func(c *config) {
		c.credSources = append(c.credSources, "WithManagedIdentity")
		c.build = func(co azcore.ClientOptions, _ *config) (azcore.TokenCredential, error) {
			o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
			if clientID != "" {
				o.ID = azidentity.ClientID(clientID)
			}
			return azidentity.NewManagedIdentityCredential(o)
		}
	}
}

// WithWorkloadIdentity authenticates with a federated token, as on AKS with
// Microsoft Entra Workload ID (azidentity.NewWorkloadIdentityCredential).
// All three values are required: the library reads no environment variables
// (pass AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE from
// the service's configuration). The token file is re-read as it rotates.
func WithWorkloadIdentity(tenantID, clientID, tokenFile string) Option {
	return func(c *config) {
		c.credSources = append(c.credSources, "WithWorkloadIdentity")
		c.build = func(co azcore.ClientOptions, c *config) (azcore.TokenCredential, error) {
			if tenantID == "" || clientID == "" || tokenFile == "" {
				return nil, errors.New("WithWorkloadIdentity needs a tenant ID, a client ID and a token file")
			}
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
				ClientOptions:              co,
				TenantID:                   tenantID,
				ClientID:                   clientID,
				TokenFilePath:              tokenFile,
				AdditionallyAllowedTenants: c.tenants(),
				DisableInstanceDiscovery:   c.disableInstanceDis,
			})
		}
	}
}

// WithAllowedTenants restricts the tenants WithClientSecret and
// WithWorkloadIdentity may get tokens in, besides their own. By default any
// tenant is allowed ("*"): a customer's vault lives in the customer's tenant,
// which Key Vault names in its authentication challenge, and Keyward's
// multi-tenant application follows it. Pass the customers' tenant IDs to pin
// them; pass none to allow only the credential's own tenant.
func WithAllowedTenants(tenantIDs ...string) Option {
	return func(c *config) {
		c.allowedTenants = append([]string(nil), tenantIDs...)
		c.tenantsSet = true
	}
}

// WithDisableInstanceDiscovery skips Microsoft Entra instance discovery for
// WithClientSecret and WithWorkloadIdentity. Only for private authorities
// (Azure Stack, the kmstest emulator); never needed for Azure's clouds.
func WithDisableInstanceDiscovery() Option {
	return func(c *config) { c.disableInstanceDis = true }
}

// WithClientOptions sets the azcore options of the Key Vault clients and of
// the credentials built by WithClientSecret, WithManagedIdentity and
// WithWorkloadIdentity: Transport (e.g. an emulator's TLS client), Cloud
// (sovereign clouds: cloud.AzureChina, cloud.AzureGovernment), tracing,
// logging. Retry.MaxRetries is governed by WithMaxRetries; zero
// Retry.RetryDelay and Retry.MaxRetryDelay take Keyward's defaults (100 ms,
// 200 ms).
func WithClientOptions(o azcore.ClientOptions) Option {
	return func(c *config) { c.co = o }
}

// WithMaxRetries sets the SDK's retry budget per call (default
// DefaultMaxRetries = 1; 0 disables SDK retries). The SDK retries
// connection failures, 408, 429 and 5xx; a Retry-After longer than 200 ms is
// not waited for (the call fails as throttled and JetStream redelivers
// later). Every call is bounded anyway by kms.Client's per-call timeout,
// through ctx.
func WithMaxRetries(n int) Option {
	return func(c *config) { c.maxRetries = n }
}

// WithAlgorithm overrides the wrapping algorithm for every key:
// AlgorithmRSAOAEP256 or AlgorithmA256KW. By default it follows the vault
// kind in the key URI: Key Vault (*.vault.azure.net) → RSA-OAEP-256, Managed
// HSM (*.managedhsm.azure.net) → A256KW. Use it for a Managed HSM that holds
// RSA-HSM keys. Decrypt never uses it: it unwraps with the algorithm
// recorded in the ciphertext.
func WithAlgorithm(alg azkeys.EncryptionAlgorithm) Option {
	return func(c *config) { c.alg = alg }
}

func (c *config) tenants() []string {
	if !c.tenantsSet {
		return []string{"*"}
	}
	return c.allowedTenants
}

// New returns a Provider. Register it with
// kms.WithProvider(kms.SchemeAzure, p). It fails when no credential or more
// than one credential option is given, when a credential cannot be built,
// or when WithAlgorithm names an unsupported algorithm.
func New(opts ...Option) (*Provider, error) {
	c := config{maxRetries: DefaultMaxRetries}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	var problems []error
	switch len(c.credSources) {
	case 0:
		problems = append(problems, errors.New("no credential: use WithCredential, WithClientSecret, WithManagedIdentity or WithWorkloadIdentity"))
	case 1:
	default:
		problems = append(problems, fmt.Errorf("more than one credential option (%s): choose one", strings.Join(c.credSources, ", ")))
	}
	if c.maxRetries < 0 {
		problems = append(problems, fmt.Errorf("WithMaxRetries(%d): must be 0 or more", c.maxRetries))
	}
	if c.alg != "" && c.alg != AlgorithmRSAOAEP256 && c.alg != AlgorithmA256KW {
		problems = append(problems, fmt.Errorf("WithAlgorithm(%q): use %s or %s", c.alg, AlgorithmRSAOAEP256, AlgorithmA256KW))
	}
	co := c.co
	co.Retry.MaxRetries = int32(c.maxRetries)
	if c.maxRetries == 0 {
		co.Retry.MaxRetries = -1 // azcore: negative means no retries, 0 means its default of 3
	}
	if co.Retry.RetryDelay == 0 {
		co.Retry.RetryDelay = defaultRetryDelay
	}
	if co.Retry.MaxRetryDelay == 0 {
		co.Retry.MaxRetryDelay = defaultMaxRetryDelay
	}
	var cred azcore.TokenCredential
	if len(problems) == 0 {
		var err error
		if cred, err = c.build(co, &c); err != nil {
			problems = append(problems, fmt.Errorf("credential: %w", err))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("azurekv: %w", errors.Join(problems...))
	}
	return &Provider{
		cred:    tokenSource{cred},
		co:      co,
		alg:     c.alg,
		clients: map[clientKey]*azkeys.Client{},
	}, nil
}

// GenerateDataKey returns a fresh 32-byte key from crypto/rand wrapped under
// key (its current version, or the version the URI pins).
func (p *Provider) GenerateDataKey(ctx context.Context, key kms.KeyURI, ec kms.EncryptionContext) (*kms.DataKey, error) {
	const op = kms.OpGenerateDataKey
	b := make([]byte, kms.DataKeySize)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	pt := kms.NewSecret(b)
	w, err := p.wrap(ctx, op, key, pt, ec)
	if err != nil {
		pt.Destroy()
		return nil, err
	}
	return &kms.DataKey{Plaintext: pt, Ciphertext: w.Ciphertext, KeyVersion: w.KeyVersion}, nil
}

// Encrypt wraps plaintext under key (its current version, or the version the
// URI pins). With RSA-OAEP-256 on a 2048-bit key the plaintext may be at most
// 142 bytes (190 minus the 16-byte random prefix and the 32-byte context
// digest); with A256KW its length must be a multiple of 8. Keyward wraps
// 32-byte seeds.
func (p *Provider) Encrypt(ctx context.Context, key kms.KeyURI, plaintext *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	return p.wrap(ctx, kms.OpEncrypt, key, plaintext, ec)
}

func (p *Provider) wrap(ctx context.Context, op string, key kms.KeyURI, pt *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	if err := p.check(ctx, op, key, ec); err != nil {
		return nil, err
	}
	alg := p.algorithm(key)
	switch n := pt.Len(); {
	case n == 0:
		return nil, newError(kms.CodeInvalidArgument, op, key, errors.New("plaintext is empty or destroyed"))
	case n > kms.MaxPlaintextLen:
		return nil, newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("plaintext is %d bytes, at most %d allowed", n, kms.MaxPlaintextLen))
	case alg == AlgorithmA256KW && n%8 != 0:
		return nil, newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("plaintext is %d bytes; A256KW wraps multiples of 8 bytes", n))
	}
	c, err := p.client(op, key)
	if err != nil {
		return nil, err
	}
	msg := sealMessage(pt.Bytes(), ec)
	defer clear(msg)
	resp, err := c.WrapKey(ctx, key.KeyID, key.Version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: msg}, nil)
	if err != nil {
		return nil, p.sdkError(ctx, op, opWrapKey, key, err)
	}
	kid, version, err := checkKID(key, resp.KID)
	if err != nil {
		return nil, newError(kms.CodeInternal, op, key, fmt.Errorf("wrapKey answer: %w", err))
	}
	if len(resp.Result) == 0 || len(resp.Result) > maxWrappedLen {
		return nil, newError(kms.CodeInternal, op, key, fmt.Errorf("wrapKey answered a %d-byte value", len(resp.Result)))
	}
	ct, err := appendCiphertext(nil, alg, kid, resp.Result)
	if err != nil {
		return nil, newError(kms.CodeInternal, op, key, err)
	}
	return &kms.Wrapped{Ciphertext: ct, KeyVersion: version}, nil
}

// Decrypt unwraps a ciphertext made by GenerateDataKey or Encrypt under any
// version of key with the same encryption context. It unwraps with the key
// version and algorithm recorded in the ciphertext header.
func (p *Provider) Decrypt(ctx context.Context, key kms.KeyURI, ciphertext []byte, ec kms.EncryptionContext) (*kms.Secret, error) {
	const op = kms.OpDecrypt
	if err := p.check(ctx, op, key, ec); err != nil {
		return nil, err
	}
	h, err := parseCiphertext(ciphertext)
	if err != nil {
		return nil, newError(kms.CodeInvalidCiphertext, op, key, err)
	}
	c, err := p.client(op, key)
	if err != nil {
		return nil, err
	}
	if !h.names(key) {
		// Another key (or vault) wrapped it: it cannot unwrap here. One
		// unwrap with this key tells a foreign ciphertext (the key answers,
		// and fails to unwrap) from a missing, disabled or denied key.
		return nil, p.confirm(ctx, op, key, c, h, fmt.Sprintf("ciphertext was wrapped by key %s in %s, not by this key", h.name, h.host))
	}
	resp, err := c.UnwrapKey(ctx, key.KeyID, h.version, azkeys.KeyOperationParameters{Algorithm: &h.alg, Value: h.wrapped}, nil)
	if err != nil {
		kerr := p.sdkError(ctx, op, opUnwrapKey, key, err)
		if kms.CodeOf(kerr) == kms.CodeKeyNotFound && !kms.IsCanceled(kerr) {
			// Key Vault deletes whole keys, never single versions: if the
			// key still answers, the recorded version never belonged to it
			// (a modified or foreign ciphertext), which must not mark the
			// tenant's key unusable.
			return nil, p.confirm(ctx, op, key, c, h, fmt.Sprintf("key %s has no version %s", key.KeyID, h.version))
		}
		return nil, kerr
	}
	defer clear(resp.Result)
	if resp.KID != nil {
		if _, _, err := checkKID(key, resp.KID); err != nil {
			return nil, newError(kms.CodeInternal, op, key, fmt.Errorf("unwrapKey answer: %w", err))
		}
	}
	return openMessage(op, key, resp.Result, ec)
}

// confirm answers for a ciphertext that cannot belong to key (why says
// why): it unwraps the ciphertext's value with key's current (or pinned)
// version. A key-level, throttling or endpoint error is returned as such;
// Key Vault refusing the value, or even accepting it, is
// CodeInvalidCiphertext.
func (p *Provider) confirm(ctx context.Context, op string, key kms.KeyURI, c *azkeys.Client, h header, why string) error {
	alg := p.algorithm(key)
	resp, err := c.UnwrapKey(ctx, key.KeyID, key.Version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: h.wrapped}, nil)
	if err == nil {
		clear(resp.Result)
		return newError(kms.CodeInvalidCiphertext, op, key, errors.New(why))
	}
	kerr := p.sdkError(ctx, op, opUnwrapKey, key, err)
	if kms.CodeOf(kerr) == kms.CodeInvalidCiphertext {
		return newError(kms.CodeInvalidCiphertext, op, key, errors.New(why))
	}
	return kerr
}

// sealMessage returns random(16) || plaintext || SHA-256(ec.Canonical()),
// the value sent to wrapKey. The caller clears it.
func sealMessage(plaintext []byte, ec kms.EncryptionContext) []byte {
	msg := make([]byte, nonceSize, nonceSize+len(plaintext)+digestSize)
	_, _ = rand.Read(msg)
	msg = append(msg, plaintext...)
	d := sha256.Sum256(ec.Canonical())
	return append(msg, d[:]...)
}

// openMessage splits a message unwrapped by Key Vault into random prefix,
// plaintext and context digest, and checks the digest in constant time. The
// returned Secret owns a copy; the caller clears msg.
func openMessage(op string, key kms.KeyURI, msg []byte, ec kms.EncryptionContext) (*kms.Secret, error) {
	if len(msg) <= nonceSize+digestSize {
		return nil, newError(kms.CodeInvalidCiphertext, op, key, fmt.Errorf("unwrapped value is %d bytes, too short for a Keyward message", len(msg)))
	}
	end := len(msg) - digestSize
	want := sha256.Sum256(ec.Canonical())
	if subtle.ConstantTimeCompare(msg[end:], want[:]) != 1 {
		return nil, newError(kms.CodeInvalidCiphertext, op, key, errors.New("encryption context differs from the one the ciphertext was wrapped with"))
	}
	return kms.NewSecret(append(make([]byte, 0, end-nonceSize), msg[nonceSize:end]...)), nil
}

// check refuses a done context, a foreign or incomplete key URI and an
// invalid context before any call.
func (p *Provider) check(ctx context.Context, op string, key kms.KeyURI, ec kms.EncryptionContext) error {
	if ctx.Err() != nil {
		return newError(kms.CodeInternal, op, key, kms.CanceledCause(ctx))
	}
	if key.Scheme != kms.SchemeAzure || key.Vault == "" || key.KeyID == "" {
		return newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("azurekv cannot use a %q key URI without a vault and key name", key.Scheme))
	}
	if err := ec.Validate(); err != nil {
		return newError(kms.CodeInvalidArgument, op, key, err)
	}
	return nil
}

// algorithm is the wrapping algorithm for key: WithAlgorithm, else by vault
// kind.
func (p *Provider) algorithm(key kms.KeyURI) azkeys.EncryptionAlgorithm {
	if p.alg != "" {
		return p.alg
	}
	if IsManagedHSM(key.Vault) {
		return AlgorithmA256KW
	}
	return AlgorithmRSAOAEP256
}

// IsManagedHSM reports whether host is a Managed HSM host
// (<name>.managedhsm.azure.net or a sovereign cloud's equivalent).
func IsManagedHSM(host string) bool {
	return strings.Contains(strings.ToLower(host), ".managedhsm.")
}

// client returns the azkeys.Client of key's vault, creating it on first use.
// There is one client per vault URL (and vault, when ?endpoint= points
// several vaults at one emulator), so each keeps its own challenge state and
// token scope. Never share one between vaults: azcore's bearer policy keeps
// one token whatever scope it was got for, so a client challenged for
// another vault's resource could send concurrent calls that vault's token.
func (p *Provider) client(op string, key kms.KeyURI) (*azkeys.Client, error) {
	vaultURL, override := "https://"+key.Vault, false
	if key.Endpoint != "" {
		u, err := url.Parse(key.Endpoint)
		if err != nil || u.Scheme != "https" {
			return nil, newError(kms.CodeInvalidArgument, op, key, errors.New("the ?endpoint= of an azurekv key URI must be an https URL: bearer tokens are never sent over plain HTTP"))
		}
		vaultURL, override = key.Endpoint, true
	}
	k := clientKey{vaultURL: vaultURL, vault: key.Vault}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[k]; c != nil {
		return c, nil
	}
	// With ?endpoint= the request host (127.0.0.1, an emulator) can never
	// end in the resource the challenge names (vault.azure.net), so the
	// SDK's check that it does is turned off there, and only there.
	c, err := azkeys.NewClient(vaultURL, p.cred, &azkeys.ClientOptions{
		ClientOptions:                        p.co,
		DisableChallengeResourceVerification: override,
	})
	if err != nil {
		return nil, newError(kms.CodeInternal, op, key, err)
	}
	p.clients[k] = c
	return c, nil
}

// checkKID validates the key identifier Key Vault answered with: it must
// name key (same vault or endpoint host, same name, case-insensitively) and
// carry a version.
func checkKID(key kms.KeyURI, id *azkeys.ID) (kid, version string, err error) {
	if id == nil || *id == "" {
		return "", "", errors.New("no key identifier (kid)")
	}
	kid = string(*id)
	host, name, version, err := parseKID(kid)
	if err != nil {
		return "", "", err
	}
	if !sameKey(key, host, name) {
		return "", "", fmt.Errorf("kid %q names another key than %s", kid, key.KeyID)
	}
	return kid, version, nil
}

// sameKey reports whether host and name (from a kid) name key: Key Vault
// names and vault host names are case-insensitive. With ?endpoint= the
// endpoint's host is accepted too (emulators may answer with their own).
func sameKey(key kms.KeyURI, host, name string) bool {
	if !strings.EqualFold(name, key.KeyID) {
		return false
	}
	h := stripPort(host)
	if strings.EqualFold(h, key.Vault) {
		return true
	}
	if key.Endpoint != "" {
		if u, err := url.Parse(key.Endpoint); err == nil && strings.EqualFold(h, u.Hostname()) {
			return true
		}
	}
	return false
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i]
	}
	return host
}

// tokenSource wraps the credential so the error table can tell a failure to
// get a token from a failure of Key Vault itself.
type tokenSource struct{ cred azcore.TokenCredential }

func (t tokenSource) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tk, err := t.cred.GetToken(ctx, o)
	if err != nil {
		return tk, &TokenError{Scopes: append([]string(nil), o.Scopes...), TenantID: o.TenantID, Err: err}
	}
	return tk, nil
}

// TokenError is a failure to get a Microsoft Entra token for Key Vault: the
// credential's error (e.g. *azidentity.AuthenticationFailedError) is Err. It
// is in the chain of the *kms.Error.
type TokenError struct {
	Scopes   []string // e.g. https://vault.azure.net/.default
	TenantID string   // the tenant Key Vault's challenge named
	Err      error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("Keyward's Azure credential could not get a token")
	if len(e.Scopes) > 0 {
		b.WriteString(" for ")
		b.WriteString(strings.Join(e.Scopes, " "))
	}
	if e.TenantID != "" {
		b.WriteString(" in tenant ")
		b.WriteString(e.TenantID)
	}
	b.WriteString(": ")
	b.WriteString(summarizeTokenError(e.Err))
	return b.String()
}

func (e *TokenError) Unwrap() error { return e.Err }

func newError(code kms.Code, op string, key kms.KeyURI, err error) *kms.Error {
	return &kms.Error{Code: code, Provider: kms.SchemeAzure, Op: op, Key: key.String(), Err: err}
}
