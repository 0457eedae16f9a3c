package ocikms

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/common/auth"
	"github.com/oracle/oci-go-sdk/v65/keymanagement"
)

// maxAssociatedDataLen is OCI's bound on associated data: "the length of the
// string representation of the associated data must be fewer than 4096
// characters".
const maxAssociatedDataLen = 4096

// userAgentSuffix is appended to the SDK's User-Agent, so the tenant's
// audit log shows who called.
const userAgentSuffix = " keyward-ocikms"

// Provider is the kms.Provider for keys in OCI Vault (ocikms:// key URIs).
// It calls only Encrypt and Decrypt on each vault's cryptographic endpoint
// (see the package documentation), through one KMS crypto client per
// endpoint, created on first use and cached. It is safe for concurrent use.
type Provider struct {
	auth        authKind
	apiKey      *apiKey
	custom      common.ConfigurationProvider
	httpClient  *http.Client
	maxAttempts int
	allowed     []string

	mu      sync.Mutex
	clients map[string]*keymanagement.KmsCryptoClient // by endpoint

	principalMu sync.Mutex
	principal   common.ConfigurationProvider // instance or resource principal, once created
}

var _ kms.Provider = (*Provider)(nil)

// New returns a Provider. Exactly one authentication option is required
// (WithAPIKey, WithInstancePrincipal, WithResourcePrincipal,
// WithConfigurationProvider). New makes no network calls; every problem with
// the options is reported, joined, in one error. Register the provider with
// kms.WithProvider(kms.SchemeOCI, p).
func New(opts ...Option) (*Provider, error) {
	o := options{maxAttempts: DefaultMaxAttempts}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	errs := o.errs
	switch len(o.auth) {
	case 0:
		errs = append(errs, errors.New("no authentication: use one of WithAPIKey, WithInstancePrincipal, WithResourcePrincipal, WithConfigurationProvider"))
	case 1:
	default:
		names := make([]string, len(o.auth))
		for i, a := range o.auth {
			names[i] = a.String()
		}
		errs = append(errs, fmt.Errorf("more than one authentication option (%v): use exactly one", names))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("ocikms: %w", errors.Join(errs...))
	}
	p := &Provider{
		auth:        o.auth[0],
		apiKey:      o.apiKey,
		custom:      o.custom,
		httpClient:  o.httpClient,
		maxAttempts: o.maxAttempts,
		allowed:     o.allowed,
		clients:     map[string]*keymanagement.KmsCryptoClient{},
	}
	if len(p.allowed) == 0 {
		p.allowed = DefaultAllowedRegions()
	}
	return p, nil
}

// AllowedRegions returns the regions the provider accepts keys from.
func (p *Provider) AllowedRegions() []string { return append([]string(nil), p.allowed...) }

// GenerateDataKey returns a fresh 32-byte data key from crypto/rand, wrapped
// under key with OCI Encrypt (associated data = ec). OCI's
// GenerateDataEncryptionKey is not used because its response carries no key
// version (see the package documentation).
func (p *Provider) GenerateDataKey(ctx context.Context, key kms.KeyURI, ec kms.EncryptionContext) (*kms.DataKey, error) {
	const op = kms.OpGenerateDataKey
	b := make([]byte, kms.DataKeySize)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	pt := kms.NewSecret(b)
	w, err := p.encrypt(ctx, op, key, pt, ec)
	if err != nil {
		pt.Destroy()
		return nil, err
	}
	return &kms.DataKey{Plaintext: pt, Ciphertext: w.Ciphertext, KeyVersion: w.KeyVersion}, nil
}

// Encrypt wraps plaintext (1 to kms.MaxPlaintextLen bytes) under the
// current version of key with OCI Encrypt (AES-256-GCM in the vault,
// associated data = ec). The returned KeyVersion is the key version OCID
// from the response.
func (p *Provider) Encrypt(ctx context.Context, key kms.KeyURI, plaintext *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	const op = kms.OpEncrypt
	switch n := plaintext.Len(); {
	case n == 0:
		return nil, newError(kms.CodeInvalidArgument, op, key, errors.New("plaintext is empty or destroyed"))
	case n > kms.MaxPlaintextLen:
		return nil, newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("plaintext is %d bytes, at most %d allowed", n, kms.MaxPlaintextLen))
	}
	return p.encrypt(ctx, op, key, plaintext, ec)
}

func (p *Provider) encrypt(ctx context.Context, op string, key kms.KeyURI, plaintext *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	client, err := p.prepare(ctx, op, key, ec)
	if err != nil {
		return nil, err
	}
	ad := contextMap(ec)
	req := keymanagement.EncryptRequest{
		EncryptDataDetails: keymanagement.EncryptDataDetails{
			KeyId:               common.String(key.KeyID),
			Plaintext:           common.String(base64.StdEncoding.EncodeToString(plaintext.Bytes())),
			AssociatedData:      ad,
			LoggingContext:      ad,
			EncryptionAlgorithm: keymanagement.EncryptDataDetailsEncryptionAlgorithmAes256Gcm,
		},
		RequestMetadata: common.RequestMetadata{RetryPolicy: p.retryPolicy(ctx)},
	}
	resp, err := client.Encrypt(sdkContext(ctx), req)
	if err != nil {
		return nil, p.callFailed(ctx, op, opOCIEncrypt, key, err)
	}
	switch {
	case resp.Ciphertext == nil || *resp.Ciphertext == "":
		return nil, newError(kms.CodeInternal, op, key, errors.New("OCI Encrypt returned no ciphertext"))
	case resp.KeyVersionId == nil || *resp.KeyVersionId == "":
		return nil, newError(kms.CodeInternal, op, key, errors.New("OCI Encrypt returned no keyVersionId"))
	case resp.KeyId != nil && *resp.KeyId != "" && *resp.KeyId != key.KeyID:
		return nil, newError(kms.CodeInternal, op, key, fmt.Errorf("OCI Encrypt answered for key %s, not the key asked for", *resp.KeyId))
	}
	// OCI's ciphertext is a base64 string; it is kept verbatim (never
	// re-encoded), so it decrypts exactly as OCI returned it.
	return &kms.Wrapped{Ciphertext: []byte(*resp.Ciphertext), KeyVersion: *resp.KeyVersionId}, nil
}

// Decrypt unwraps a ciphertext made by GenerateDataKey or Encrypt under any
// version of key (OCI's ciphertext names the version) with the same ec.
func (p *Provider) Decrypt(ctx context.Context, key kms.KeyURI, ciphertext []byte, ec kms.EncryptionContext) (*kms.Secret, error) {
	const op = kms.OpDecrypt
	if len(ciphertext) == 0 {
		return nil, newError(kms.CodeInvalidCiphertext, op, key, errors.New("ciphertext is empty"))
	}
	client, err := p.prepare(ctx, op, key, ec)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) > kms.MaxCiphertextLen || !printableASCII(ciphertext) {
		// OCI ciphertexts are base64 text of a few hundred bytes at most.
		return nil, newError(kms.CodeInvalidCiphertext, op, key, errors.New("not an OCI Vault ciphertext (OCI ciphertexts are base64 text)"))
	}
	ad := contextMap(ec)
	req := keymanagement.DecryptRequest{
		DecryptDataDetails: keymanagement.DecryptDataDetails{
			KeyId:               common.String(key.KeyID),
			Ciphertext:          common.String(string(ciphertext)),
			AssociatedData:      ad,
			LoggingContext:      ad,
			EncryptionAlgorithm: keymanagement.DecryptDataDetailsEncryptionAlgorithmAes256Gcm,
		},
		RequestMetadata: common.RequestMetadata{RetryPolicy: p.retryPolicy(ctx)},
	}
	resp, err := client.Decrypt(sdkContext(ctx), req)
	if err != nil {
		return nil, p.callFailed(ctx, op, opOCIDecrypt, key, err)
	}
	if resp.Plaintext == nil || *resp.Plaintext == "" {
		return nil, newError(kms.CodeInternal, op, key, errors.New("OCI Decrypt returned no plaintext"))
	}
	pt, err := base64.StdEncoding.DecodeString(*resp.Plaintext)
	if err != nil || len(pt) == 0 {
		clear(pt)
		return nil, newError(kms.CodeInternal, op, key, errors.New("OCI Decrypt returned a plaintext that is not base64"))
	}
	return kms.NewSecret(pt), nil
}

// prepare checks the context, the key URI (scheme, OCID shape, endpoint,
// region allowlist) and ec, and returns the crypto client of the key's
// endpoint. Nothing is sent when it fails.
func (p *Provider) prepare(ctx context.Context, op string, key kms.KeyURI, ec kms.EncryptionContext) (*keymanagement.KmsCryptoClient, error) {
	if ctx.Err() != nil {
		return nil, newError(kms.CodeInternal, op, key, kms.CanceledCause(ctx))
	}
	if key.Scheme != kms.SchemeOCI {
		return nil, newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("ocikms cannot use a %q key URI", key.Scheme))
	}
	if err := ValidateKeyOCID(key.KeyID); err != nil {
		return nil, newError(kms.CodeInvalidArgument, op, key, err)
	}
	if key.Endpoint == "" {
		return nil, newError(kms.CodeInvalidArgument, op, key,
			errors.New("the key URI names no endpoint: add ?endpoint=https://<vault>-crypto.kms.<region>.oraclecloud.com"))
	}
	if err := CheckRegion(key, p.allowed); err != nil {
		var ke *kms.Error
		if errors.As(err, &ke) {
			return nil, newError(ke.Code, op, key, ke.Err)
		}
		return nil, newError(kms.CodeInvalidArgument, op, key, err)
	}
	if err := ec.Validate(); err != nil {
		return nil, newError(kms.CodeInvalidArgument, op, key, err)
	}
	if n := associatedDataLen(ec); n >= maxAssociatedDataLen {
		return nil, newError(kms.CodeInvalidArgument, op, key,
			fmt.Errorf("encryption context is %d characters as JSON; OCI accepts associated data of fewer than %d", n, maxAssociatedDataLen))
	}
	return p.client(op, key)
}

// client returns the crypto client of key's endpoint, creating it on first
// use. Creation is done outside the lock (an instance principal fetches
// tokens); a racing duplicate is dropped.
func (p *Provider) client(op string, key kms.KeyURI) (*keymanagement.KmsCryptoClient, error) {
	p.mu.Lock()
	c := p.clients[key.Endpoint]
	p.mu.Unlock()
	if c != nil {
		return c, nil
	}
	cp, err := p.configurationProvider(key.Region)
	if err != nil {
		return nil, newError(kms.CodeInternal, op, key, err)
	}
	kc, err := keymanagement.NewKmsCryptoClientWithConfigurationProvider(cp, key.Endpoint)
	if err != nil {
		return nil, newError(kms.CodeInternal, op, key, fmt.Errorf("cannot create the OCI KMS crypto client: %w", err))
	}
	// Keyward has its own breaker per endpoint and retries through
	// JetStream: the SDK's circuit breaker is off, and its retry policy is
	// replaced on every request (retryPolicy).
	kc.Configuration.CircuitBreaker = nil
	none := common.NoRetryPolicy()
	kc.Configuration.RetryPolicy = &none
	kc.UserAgent += userAgentSuffix
	if p.httpClient != nil {
		kc.HTTPClient = p.httpClient
	}
	kc.HTTPClient = ctxDispatcher{next: kc.HTTPClient}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[key.Endpoint]; c != nil {
		return c, nil
	}
	p.clients[key.Endpoint] = &kc
	return &kc, nil
}

// configurationProvider returns the SDK configuration provider for keys in
// region.
func (p *Provider) configurationProvider(region string) (common.ConfigurationProvider, error) {
	switch p.auth {
	case authAPIKey:
		k := p.apiKey
		// The region is not used for signing (the endpoint is explicit);
		// the SDK only requires one.
		raw := common.NewRawConfigurationProvider(k.tenancy, k.user, region, k.fingerprint, k.pem, k.passphrase)
		return parsedKey{ConfigurationProvider: raw, key: k.key}, nil
	case authCustom:
		return p.custom, nil
	}
	p.principalMu.Lock()
	defer p.principalMu.Unlock()
	if p.principal != nil {
		return p.principal, nil
	}
	var (
		cp  common.ConfigurationProvider
		err error
	)
	switch p.auth {
	case authInstancePrincipal:
		cp, err = auth.InstancePrincipalConfigurationProvider()
		if err != nil {
			return nil, fmt.Errorf("cannot create the OCI instance principal (is Keyward running on an OCI instance?): %w", err)
		}
	case authResourcePrincipal:
		cp, err = auth.ResourcePrincipalConfigurationProvider()
		if err != nil {
			return nil, fmt.Errorf("cannot create the OCI resource principal (are the OCI_RESOURCE_PRINCIPAL_* variables set?): %w", err)
		}
	default:
		return nil, errors.New("no authentication configured")
	}
	p.principal = cp
	return cp, nil
}

// callCtxKey carries the caller's context past the SDK's retry loop.
type callCtxKey struct{}

// sdkContext is the context handed to the SDK: ctx's values without its
// cancellation, and ctx itself as a value that ctxDispatcher puts back on
// the HTTP request. The SDK's common.Retry returns as soon as its context is
// done while its attempt goroutine still writes the response it returns (a
// data race); with this context, Retry returns only once the attempt has
// ended, which the HTTP request's cancellation makes prompt. Deadlines are
// enforced by the HTTP request and by retryPolicy, both on ctx.
func sdkContext(ctx context.Context) context.Context {
	return context.WithValue(context.WithoutCancel(ctx), callCtxKey{}, ctx)
}

// ctxDispatcher sends each request with the caller's context (sdkContext).
type ctxDispatcher struct{ next common.HTTPRequestDispatcher }

func (d ctxDispatcher) Do(r *http.Request) (*http.Response, error) {
	if ctx, ok := r.Context().Value(callCtxKey{}).(context.Context); ok {
		r = r.WithContext(ctx)
	}
	return d.next.Do(r)
}

// parsedKey is a raw configuration provider whose private key was parsed
// once, by New, instead of on every request.
type parsedKey struct {
	common.ConfigurationProvider
	key *rsa.PrivateKey
}

func (k parsedKey) PrivateRSAKey() (*rsa.PrivateKey, error) { return k.key, nil }

// retryPolicy is the SDK retry policy of one request: at most p.maxAttempts
// attempts; retry only transport failures (not an unknown host) and 5xx
// other than 501; never once ctx is done or when the pause would not leave
// room before ctx's deadline.
func (p *Provider) retryPolicy(ctx context.Context) *common.RetryPolicy {
	maxAttempts := uint(p.maxAttempts)
	// The pause after attempt n is in [base(n), 2*base(n)).
	base := func(attempt uint) time.Duration { return 50 * time.Millisecond << (attempt - 1) }
	rp := common.NewRetryPolicyWithOptions(
		common.ReplaceWithValuesFromRetryPolicy(common.NoRetryPolicy()),
		common.WithMaximumNumberAttempts(maxAttempts),
		common.WithShouldRetryOperation(func(r common.OCIOperationResponse) bool {
			if r.Error == nil || r.AttemptNumber >= maxAttempts || ctx.Err() != nil {
				return false
			}
			if d, ok := ctx.Deadline(); ok && time.Until(d) < 2*base(r.AttemptNumber)+100*time.Millisecond {
				return false
			}
			return retryable(r.Error)
		}),
		common.WithNextDuration(func(r common.OCIOperationResponse) time.Duration {
			b := base(r.AttemptNumber)
			return b + mrand.N(b)
		}),
	)
	return &rp
}

// retryable reports whether one quick retry may help: no HTTP answer (but
// not an unknown host), or a 5xx other than 501.
func retryable(err error) bool {
	if se, ok := serviceError(err); ok {
		s := se.GetHTTPStatusCode()
		return s >= 500 && s <= 599 && s != http.StatusNotImplemented
	}
	return isTransportError(err) && !isDNSNotFound(err)
}

func serviceError(err error) (common.ServiceError, bool) {
	var se common.ServiceError
	ok := errors.As(err, &se)
	return se, ok
}

// callFailed turns the error of an OCI call into a *kms.Error: the caller's
// ended context first (kms.CodeInternal matching ctx.Err()), then the error
// table.
func (p *Provider) callFailed(ctx context.Context, op, ociOp string, key kms.KeyURI, err error) error {
	if ctx.Err() != nil {
		return newError(kms.CodeInternal, op, key, kms.CanceledCause(ctx))
	}
	code, cerr := classify(ociOp, key.Endpoint, err)
	return newError(code, op, key, cerr)
}

func newError(code kms.Code, op string, key kms.KeyURI, err error) *kms.Error {
	return &kms.Error{Code: code, Provider: kms.SchemeOCI, Op: op, Key: keyString(key), Err: err}
}

// associatedDataLen is the length of ec's string representation as OCI
// measures associated data: its JSON form (0 for an empty context).
func associatedDataLen(ec kms.EncryptionContext) int {
	if len(ec) == 0 {
		return 0
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]string(ec)) // a map of strings always encodes
	return len(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// contextMap returns ec as OCI associated data (nil for an empty context,
// so the field is left out).
func contextMap(ec kms.EncryptionContext) map[string]string {
	if len(ec) == 0 {
		return nil
	}
	return map[string]string(ec.Clone())
}

func printableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
