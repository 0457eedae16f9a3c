package awskms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	kmsapi "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyward/keyward/pkg/kms"
)

// Retry budget defaults (see the package documentation).
const (
	// DefaultMaxAttempts is the SDK's attempt budget per call: the first
	// attempt and one quick retry. Keyward's own retry layer is JetStream
	// redelivery, so the SDK's stays small.
	DefaultMaxAttempts = 2
	// DefaultRetryMaxBackoff caps the SDK's jittered delay before a retry.
	// It stays well under kms.DefaultCallTimeout (500 ms): a retry still
	// waiting when the Client's per-call timeout ends turns a throttled
	// call into an endpoint_unreachable one, which counts against the
	// endpoint's circuit breaker.
	DefaultRetryMaxBackoff = 100 * time.Millisecond
	// retryBaseDelay is the base of the exponential backoff for errors other
	// than throttling (throttling starts at 1s, capped by the max backoff).
	retryBaseDelay = 50 * time.Millisecond
)

// RoleSessionName is the session name of every role Keyward assumes
// (WithAssumeRole); it appears in the tenant's CloudTrail as
// assumed-role/<role>/keyward.
const RoleSessionName = "keyward"

// AppID is sent in the User-Agent of every call ("app/keyward"), so the
// tenant's CloudTrail shows which application used the key.
const AppID = "keyward"

// MaxCiphertextLen is AWS KMS's limit on a Decrypt ciphertext; longer input
// is refused with kms.CodeInvalidCiphertext without a call.
const MaxCiphertextLen = 6144

// Provider is the kms.Provider for AWS KMS (awskms:// key URIs). It makes
// only GenerateDataKey, Encrypt and Decrypt calls. It is safe for concurrent
// use; SDK clients are created lazily, one per (region, endpoint), and
// cached.
type Provider struct {
	cfg  aws.Config // base configuration: credentials, HTTP client, env settings
	opts options

	mu      sync.Mutex
	clients map[clientKey]*kmsapi.Client
	creds   map[string]aws.CredentialsProvider // by region
}

var _ kms.Provider = (*Provider)(nil)

type clientKey struct{ region, endpoint string }

// Option configures New.
type Option func(*options)

type options struct {
	creds       aws.CredentialsProvider
	roleARN     string
	externalID  string
	assumeRole  bool
	stsEndpoint string
	httpClient  *http.Client
	maxAttempts int
	maxBackoff  time.Duration
	errs        []error
}

// WithCredentials uses creds instead of the standard credential chain.
func WithCredentials(creds aws.CredentialsProvider) Option {
	return func(o *options) {
		if creds == nil {
			o.errs = append(o.errs, errors.New("WithCredentials: the credentials provider is nil"))
			return
		}
		o.creds = creds
	}
}

// WithAssumeRole makes every call with temporary credentials of roleARN,
// obtained from STS (AssumeRole, session name RoleSessionName) with the base
// credentials (the standard chain, or WithCredentials) and cached until
// shortly before they expire. externalID is passed to AssumeRole when not
// empty. Credentials are assumed per KMS region, from that region's STS
// endpoint, so one region's outage does not spread to another.
func WithAssumeRole(roleARN, externalID string) Option {
	return func(o *options) {
		o.assumeRole, o.roleARN, o.externalID = true, roleARN, externalID
	}
}

// WithSTSEndpoint sends WithAssumeRole's AssumeRole calls to endpoint (an
// STS VPC interface endpoint, or a test server) instead of the regional STS
// endpoint.
func WithSTSEndpoint(endpoint string) Option {
	return func(o *options) { o.stsEndpoint = endpoint }
}

// WithHTTPClient sends requests (to KMS and STS) through c instead of the
// SDK's default client. A nil c keeps the default.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.httpClient = c }
}

// WithMaxAttempts sets the SDK's attempt budget per call (default
// DefaultMaxAttempts: one quick retry); 1 disables SDK retries.
func WithMaxAttempts(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.errs = append(o.errs, fmt.Errorf("WithMaxAttempts(%d): at least 1 attempt is needed", n))
			return
		}
		o.maxAttempts = n
	}
}

// WithRetryMaxBackoff caps the jittered delay before an SDK retry (default
// DefaultRetryMaxBackoff). Keep it well under the kms.Client's call timeout.
func WithRetryMaxBackoff(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.errs = append(o.errs, fmt.Errorf("WithRetryMaxBackoff(%v): must be positive", d))
			return
		}
		o.maxBackoff = d
	}
}

var (
	roleARNRe    = regexp.MustCompile(`^arn:aws(-cn|-us-gov|-iso|-iso-b|-iso-e|-iso-f|-eusc)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)
	externalIDRe = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
)

func (o *options) validate() error {
	errs := append([]error(nil), o.errs...)
	if o.assumeRole {
		if !roleARNRe.MatchString(o.roleARN) {
			errs = append(errs, fmt.Errorf("WithAssumeRole: role ARN %q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", o.roleARN))
		}
		if o.externalID != "" && (len(o.externalID) < 2 || len(o.externalID) > 1224 || !externalIDRe.MatchString(o.externalID)) {
			errs = append(errs, errors.New("WithAssumeRole: the external id must be 2-1224 characters of letters, digits and +=,.@:/-"))
		}
	}
	if o.stsEndpoint != "" {
		if !o.assumeRole {
			errs = append(errs, errors.New("WithSTSEndpoint: only used with WithAssumeRole"))
		}
		if u, err := url.Parse(o.stsEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, errors.New("WithSTSEndpoint: the endpoint must be an http(s) URL without credentials"))
		}
	}
	return errors.Join(errs...)
}

// New returns a Provider. Without WithCredentials it uses the standard AWS
// credential chain (environment, shared config and credentials files, web
// identity, ECS and EC2 instance roles) as config.LoadDefaultConfig resolves
// it; nothing is fetched until the first call. ctx is used only while
// loading the configuration. Register the provider with
// kms.WithProvider(kms.SchemeAWS, p).
func New(ctx context.Context, opts ...Option) (*Provider, error) {
	o := options{maxAttempts: DefaultMaxAttempts, maxBackoff: DefaultRetryMaxBackoff}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("awskms: %w", err)
	}
	var load []func(*config.LoadOptions) error
	if o.creds != nil {
		load = append(load, config.WithCredentialsProvider(o.creds))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("awskms: loading the AWS configuration: %w", err)
	}
	if o.httpClient != nil {
		// Set after loading: config.WithHTTPClient refuses an *http.Client
		// when AWS_CA_BUNDLE is set (a caller's client brings its own TLS
		// configuration).
		cfg.HTTPClient = o.httpClient
	}
	return &Provider{
		cfg:     cfg,
		opts:    o,
		clients: map[clientKey]*kmsapi.Client{},
		creds:   map[string]aws.CredentialsProvider{},
	}, nil
}

// newRetryer is the SDK retryer of every client: the standard retryer with
// Keyward's attempt budget and backoff cap, and no client-side retry quota
// (Keyward rate-limits per endpoint itself; an exhausted quota would replace
// the service's error with a quota error).
func (p *Provider) newRetryer() aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = p.opts.maxAttempts
		so.MaxBackoff = p.opts.maxBackoff
		so.BaseDelay = retryBaseDelay
		so.RateLimiter = ratelimit.None
	})
}

// client returns the SDK client for key's region and endpoint.
func (p *Provider) client(key kms.KeyURI) *kmsapi.Client {
	k := clientKey{key.Region, key.Endpoint}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[k]; ok {
		return c
	}
	creds := p.credentialsLocked(key.Region)
	c := kmsapi.NewFromConfig(p.cfg, func(o *kmsapi.Options) {
		o.Region = key.Region
		if key.Endpoint != "" {
			o.BaseEndpoint = aws.String(key.Endpoint)
		}
		o.Credentials = creds
		o.Retryer = p.newRetryer()
		o.AppID = AppID
	})
	p.clients[k] = c
	return c
}

// credentialsLocked returns the credentials for calls in region: the base
// credentials, or those of the assumed role (one cache per region).
func (p *Provider) credentialsLocked(region string) aws.CredentialsProvider {
	if c, ok := p.creds[region]; ok {
		return c
	}
	var c aws.CredentialsProvider = p.cfg.Credentials
	if p.opts.assumeRole {
		stsClient := sts.NewFromConfig(p.cfg, func(o *sts.Options) {
			o.Region = region
			if p.opts.stsEndpoint != "" {
				o.BaseEndpoint = aws.String(p.opts.stsEndpoint)
			}
			o.Retryer = p.newRetryer()
			o.AppID = AppID
		})
		c = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, p.opts.roleARN,
			func(ao *stscreds.AssumeRoleOptions) {
				ao.RoleSessionName = RoleSessionName
				if p.opts.externalID != "" {
					ao.ExternalID = aws.String(p.opts.externalID)
				}
			}))
	}
	c = credentialsProvider{c}
	p.creds[region] = c
	return c
}

// credentialsProvider marks failures to obtain credentials, so they are
// reported as credential problems (see the error table).
type credentialsProvider struct{ p aws.CredentialsProvider }

func (c credentialsProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if c.p == nil {
		return aws.Credentials{}, &credentialsError{errors.New("no AWS credentials are configured")}
	}
	creds, err := c.p.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, &credentialsError{err}
	}
	return creds, nil
}

// credentialsError is a failure to obtain credentials (credential chain,
// STS AssumeRole).
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "obtaining AWS credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// check refuses what cannot be sent: another scheme, no region, an invalid
// context, a done ctx.
func check(ctx context.Context, op string, key kms.KeyURI, ec kms.EncryptionContext) error {
	if ctx.Err() != nil {
		return newError(kms.CodeInternal, op, key, kms.CanceledCause(ctx))
	}
	if key.Scheme != kms.SchemeAWS || key.KeyID == "" {
		return newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("awskms cannot use a %q key URI", key.Scheme))
	}
	if key.Region == "" {
		return newError(kms.CodeInvalidArgument, op, key, errors.New("the key URI has no region: use a key ARN or add ?region=<region>"))
	}
	if err := ec.Validate(); err != nil {
		return newError(kms.CodeInvalidArgument, op, key, err)
	}
	return nil
}

// GenerateDataKey asks KMS for a fresh AES-256 data key under key, bound to
// ec. KeyVersion is the ARN of the key that wrapped it (an alias resolves to
// its target key).
func (p *Provider) GenerateDataKey(ctx context.Context, key kms.KeyURI, ec kms.EncryptionContext) (*kms.DataKey, error) {
	const op = kms.OpGenerateDataKey
	if err := check(ctx, op, key, ec); err != nil {
		return nil, err
	}
	out, err := p.client(key).GenerateDataKey(ctx, &kmsapi.GenerateDataKeyInput{
		KeyId:             aws.String(key.KeyID),
		KeySpec:           kmstypes.DataKeySpecAes256,
		EncryptionContext: ec.Clone(),
	})
	if err != nil {
		return nil, mapError(ctx, op, key, err)
	}
	pt := kms.NewSecret(out.Plaintext)
	switch {
	case pt.Len() != kms.DataKeySize:
		err = fmt.Errorf("KMS returned a %d-byte data key, want %d", pt.Len(), kms.DataKeySize)
	case len(out.CiphertextBlob) == 0:
		err = errors.New("KMS returned no data key ciphertext")
	case aws.ToString(out.KeyId) == "":
		err = errors.New("KMS returned no key id")
	}
	if err != nil {
		pt.Destroy()
		return nil, newError(kms.CodeInternal, op, key, err)
	}
	return &kms.DataKey{Plaintext: pt, Ciphertext: out.CiphertextBlob, KeyVersion: *out.KeyId}, nil
}

// Encrypt wraps plaintext (1 to kms.MaxPlaintextLen bytes) under key, bound
// to ec. KeyVersion is the ARN of the key that wrapped it.
func (p *Provider) Encrypt(ctx context.Context, key kms.KeyURI, plaintext *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	const op = kms.OpEncrypt
	if err := check(ctx, op, key, ec); err != nil {
		return nil, err
	}
	switch n := plaintext.Len(); {
	case n == 0:
		return nil, newError(kms.CodeInvalidArgument, op, key, errors.New("plaintext is empty or destroyed"))
	case n > kms.MaxPlaintextLen:
		return nil, newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("plaintext is %d bytes, at most %d allowed", n, kms.MaxPlaintextLen))
	}
	out, err := p.client(key).Encrypt(ctx, &kmsapi.EncryptInput{
		KeyId:             aws.String(key.KeyID),
		Plaintext:         plaintext.Bytes(),
		EncryptionContext: ec.Clone(),
	})
	if err != nil {
		return nil, mapError(ctx, op, key, err)
	}
	switch {
	case len(out.CiphertextBlob) == 0:
		return nil, newError(kms.CodeInternal, op, key, errors.New("KMS returned no ciphertext"))
	case aws.ToString(out.KeyId) == "":
		return nil, newError(kms.CodeInternal, op, key, errors.New("KMS returned no key id"))
	}
	return &kms.Wrapped{Ciphertext: out.CiphertextBlob, KeyVersion: *out.KeyId}, nil
}

// Decrypt unwraps ciphertext with key, bound to ec. The KeyId is always
// sent, so KMS refuses a ciphertext of another key (IncorrectKeyException)
// and aliases work.
func (p *Provider) Decrypt(ctx context.Context, key kms.KeyURI, ciphertext []byte, ec kms.EncryptionContext) (*kms.Secret, error) {
	const op = kms.OpDecrypt
	if err := check(ctx, op, key, ec); err != nil {
		return nil, err
	}
	switch n := len(ciphertext); {
	case n == 0:
		return nil, newError(kms.CodeInvalidCiphertext, op, key, errors.New("ciphertext is empty"))
	case n > MaxCiphertextLen:
		return nil, newError(kms.CodeInvalidCiphertext, op, key, fmt.Errorf("ciphertext is %d bytes, AWS KMS ciphertexts are at most %d", n, MaxCiphertextLen))
	}
	out, err := p.client(key).Decrypt(ctx, &kmsapi.DecryptInput{
		KeyId:             aws.String(key.KeyID),
		CiphertextBlob:    ciphertext,
		EncryptionContext: ec.Clone(),
	})
	if err != nil {
		return nil, mapError(ctx, op, key, err)
	}
	if len(out.Plaintext) == 0 {
		return nil, newError(kms.CodeInternal, op, key, errors.New("KMS returned an empty plaintext"))
	}
	return kms.NewSecret(out.Plaintext), nil
}

func newError(code kms.Code, op string, key kms.KeyURI, err error) *kms.Error {
	return &kms.Error{Code: code, Provider: kms.SchemeAWS, Op: op, Key: key.String(), Err: err}
}
