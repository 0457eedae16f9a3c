package ocikms

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/oracle/oci-go-sdk/v65/common"
)

// Option configures New.
type Option func(*options)

type authKind int

const (
	authAPIKey authKind = iota + 1
	authInstancePrincipal
	authResourcePrincipal
	authCustom
)

func (k authKind) String() string {
	switch k {
	case authAPIKey:
		return "WithAPIKey"
	case authInstancePrincipal:
		return "WithInstancePrincipal"
	case authResourcePrincipal:
		return "WithResourcePrincipal"
	case authCustom:
		return "WithConfigurationProvider"
	}
	return "unknown"
}

type options struct {
	auth        []authKind
	apiKey      *apiKey
	custom      common.ConfigurationProvider
	httpClient  *http.Client
	maxAttempts int
	allowed     []string
	errs        []error
}

// apiKey is an OCI API signing key of a user.
type apiKey struct {
	tenancy, user, fingerprint string
	pem                        string
	passphrase                 *string
	key                        *rsa.PrivateKey // parsed once by New
}

var (
	fingerprintRe = regexp.MustCompile(`^([0-9a-f]{2}:){15}[0-9a-f]{2}$`)
	tenancyRe     = regexp.MustCompile(`^ocid1\.tenancy\.oc[0-9]{1,3}\.[a-z0-9-]*\.[a-z0-9]{1,128}$`)
	userRe        = regexp.MustCompile(`^ocid1\.user\.oc[0-9]{1,3}\.[a-z0-9-]*\.[a-z0-9]{1,128}$`)
)

// WithAPIKey authenticates as an OCI user with an API signing key (the
// draft-cavage HTTP signature with keyId "<tenancy>/<user>/<fingerprint>"):
// tenancyOCID and userOCID name the user, fingerprint is the key's
// fingerprint as the OCI console shows it (aa:bb:...:ff), privateKeyPEM the
// RSA private key in PEM (PKCS#1 or PKCS#8), passphrase its passphrase or "".
// The key is parsed once, by New; privateKeyPEM is copied.
func WithAPIKey(tenancyOCID, userOCID, fingerprint string, privateKeyPEM []byte, passphrase string) Option {
	pem := string(bytes.Clone(privateKeyPEM))
	return func(o *options) {
		o.auth = append(o.auth, authAPIKey)
		var errs []error
		if !tenancyRe.MatchString(tenancyOCID) {
			errs = append(errs, errors.New("WithAPIKey: tenancy OCID does not look like ocid1.tenancy.oc1..<id>"))
		}
		if !userRe.MatchString(userOCID) {
			errs = append(errs, errors.New("WithAPIKey: user OCID does not look like ocid1.user.oc1..<id>"))
		}
		if !fingerprintRe.MatchString(fingerprint) {
			errs = append(errs, errors.New("WithAPIKey: fingerprint is not 16 lowercase hex pairs separated by colons (aa:bb:...:ff)"))
		}
		k := &apiKey{tenancy: tenancyOCID, user: userOCID, fingerprint: fingerprint, pem: pem}
		if passphrase != "" {
			k.passphrase = &passphrase
		}
		if strings.TrimSpace(pem) == "" {
			errs = append(errs, errors.New("WithAPIKey: private key is empty"))
		} else if key, err := common.PrivateKeyFromBytes([]byte(pem), k.passphrase); err != nil {
			// The SDK's parse errors never quote the key.
			errs = append(errs, fmt.Errorf("WithAPIKey: cannot parse the private key (PEM, PKCS#1 or PKCS#8, passphrase if encrypted): %w", err))
		} else {
			k.key = key
		}
		o.errs = append(o.errs, errs...)
		o.apiKey = k
	}
}

// WithInstancePrincipal authenticates as the OCI compute instance Keyward
// runs on (auth.InstancePrincipalConfigurationProvider; the instance must be
// in a dynamic group the tenant's policy admits). The principal is created
// on the first call, not by New: it fetches certificates from the instance
// metadata service.
func WithInstancePrincipal() Option {
	return func(o *options) { o.auth = append(o.auth, authInstancePrincipal) }
}

// WithResourcePrincipal authenticates as the OCI resource (function,
// container instance, ...) Keyward runs as
// (auth.ResourcePrincipalConfigurationProvider, configured by the
// OCI_RESOURCE_PRINCIPAL_* environment variables the platform sets). The
// principal is created on the first call.
func WithResourcePrincipal() Option {
	return func(o *options) { o.auth = append(o.auth, authResourcePrincipal) }
}

// WithConfigurationProvider authenticates with any OCI SDK configuration
// provider (a config file profile, session tokens, ...). It is used as given
// for every endpoint.
func WithConfigurationProvider(cp common.ConfigurationProvider) Option {
	return func(o *options) {
		o.auth = append(o.auth, authCustom)
		if cp == nil {
			o.errs = append(o.errs, errors.New("WithConfigurationProvider: provider is nil"))
		}
		o.custom = cp
	}
}

// WithHTTPClient sends every request through hc (an emulator's client, a
// transport with a proxy, custom TLS roots or timeouts) instead of the OCI
// SDK's default HTTP client. Each endpoint's crypto client uses hc.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) {
		if hc == nil {
			o.errs = append(o.errs, errors.New("WithHTTPClient: client is nil"))
		}
		o.httpClient = hc
	}
}

// DefaultMaxAttempts is the default number of attempts of one call: the
// request and one quick retry (see WithMaxAttempts).
const DefaultMaxAttempts = 2

// maxMaxAttempts bounds WithMaxAttempts: Keyward's own retries are
// JetStream redeliveries.
const maxMaxAttempts = 5

// WithMaxAttempts bounds the attempts the OCI SDK makes for one call
// (default DefaultMaxAttempts: one quick retry). Only failures without a
// useful answer are retried — connection errors other than an unknown host,
// and HTTP 5xx except 501 — after 50-100 ms (doubling per further attempt),
// and only while the call's deadline leaves room for it. Throttling (429) is
// never retried by the SDK: Keyward backs off through JetStream redelivery.
// n must be 1 (no retry) to 5.
func WithMaxAttempts(n int) Option {
	return func(o *options) {
		if n < 1 || n > maxMaxAttempts {
			o.errs = append(o.errs, fmt.Errorf("WithMaxAttempts: %d attempts, want 1 to %d", n, maxMaxAttempts))
			return
		}
		o.maxAttempts = n
	}
}

// WithAllowedRegions replaces DefaultAllowedRegions: the OCI regions the
// platform serves OCI customers from. A key in another region fails every
// call with kms.CodeInvalidArgument before any request is sent.
func WithAllowedRegions(regions []string) Option {
	regions = append([]string(nil), regions...)
	return func(o *options) {
		if len(regions) == 0 {
			o.errs = append(o.errs, errors.New("WithAllowedRegions: no regions: name at least one"))
			return
		}
		seen := map[string]bool{}
		for _, r := range regions {
			if !ociRegionRe.MatchString(r) {
				o.errs = append(o.errs, fmt.Errorf("WithAllowedRegions: %q is not an OCI region name (e.g. us-ashburn-1)", r))
				continue
			}
			if seen[r] {
				o.errs = append(o.errs, fmt.Errorf("WithAllowedRegions: %s listed twice", r))
			}
			seen[r] = true
		}
		o.allowed = regions
	}
}
