package kms

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Key URI schemes, one per provider.
const (
	SchemeLocal = "localkms" // a key-encryption key in a local file (dev, tests, platform keys)
	SchemeAWS   = "awskms"   // AWS KMS
	SchemeOCI   = "ocikms"   // Oracle OCI Vault
	SchemeAzure = "azurekv"  // Azure Key Vault and Managed HSM
)

// MaxKeyURILen bounds a key URI so it fits in envelope headers and subjects
// of logs; every real key URI is far shorter.
const MaxKeyURILen = 1024

// ErrInvalidKeyURI is matched (errors.Is) by every key URI parse error.
var ErrInvalidKeyURI = errors.New("invalid key URI")

// URIError describes why a key URI was refused: which part, what is wrong,
// and how to write it instead. Query values are never echoed, so a secret
// pasted into a URI by mistake does not end up in a log.
type URIError struct {
	URI     string // the URI with query values redacted
	Field   string // "scheme", "key id", "region", "endpoint", ...
	Problem string
	Fix     string
}

func (e *URIError) Error() string {
	s := fmt.Sprintf("key URI %q: %s %s", e.URI, e.Field, e.Problem)
	if e.Fix != "" {
		s += ": " + e.Fix
	}
	return s
}

// Is reports whether target is ErrInvalidKeyURI.
func (e *URIError) Is(target error) bool { return target == ErrInvalidKeyURI }

// KeyURI names one key in one provider, in the style of gocloud.dev secrets
// URLs. It is a value type: parse it once with ParseKeyURI and pass it on.
//
//	localkms:///var/lib/keyward/keys/platform.key   (or localkms://relative/path.key)
//	awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
//	awskms://alias/keyward?region=eu-west-2&endpoint=http://127.0.0.1:8080
//	ocikms://ocid1.key.oc1.iad.exampleaaaa.exampleuniqueid?endpoint=https://exampleaaaa-crypto.kms.us-ashburn-1.oraclecloud.com
//	azurekv://myvault.vault.azure.net/keys/keyward[/0123456789abcdef0123456789abcdef]
type KeyURI struct {
	// Scheme is one of SchemeLocal, SchemeAWS, SchemeOCI, SchemeAzure.
	Scheme string
	// KeyID identifies the key within the provider: a file path (localkms),
	// an ARN, alias or key id (awskms), a key OCID (ocikms), or a key name
	// (azurekv).
	KeyID string
	// Version pins a key version where the URI names one (azurekv only);
	// empty means the provider's current version.
	Version string
	// Region is the provider region: from the ARN or ?region= (awskms), from
	// the crypto endpoint host or ?region= (ocikms); empty otherwise.
	Region string
	// Endpoint overrides the provider's endpoint (awskms, azurekv; required
	// for ocikms, whose crypto endpoint is per vault). Empty means the
	// provider's default.
	Endpoint string
	// Vault is the Azure Key Vault or Managed HSM host name (azurekv only).
	Vault string
}

var (
	awsRegionRe   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d{1,2}$`)
	awsAccountRe  = regexp.MustCompile(`^\d{12}$`)
	awsKeyIDRe    = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)
	awsAliasRe    = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)
	awsPartRe     = regexp.MustCompile(`^aws(-cn|-us-gov|-iso|-iso-b|-iso-e|-iso-f|-eusc)?$`)
	ociOCIDRe     = regexp.MustCompile(`^ocid1\.key\.[a-z0-9]+\.[a-z0-9-]*\.[a-z0-9.]+$`)
	ociRegionRe   = regexp.MustCompile(`^[a-z]{2,}-[a-z]+-\d{1,2}$`)
	ociHostRe     = regexp.MustCompile(`\.kms\.([a-z]{2,}-[a-z]+-\d{1,2})\.(oraclecloud\.com|oci\.oraclecloud\.com|oraclegovcloud\.com|oraclecloud\.eu)$`)
	azureVaultRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{1,22}[a-z0-9])?\.(vault\.azure\.net|managedhsm\.azure\.net|vault\.azure\.cn|vault\.usgovcloudapi\.net|managedhsm\.azure\.cn|managedhsm\.usgovcloudapi\.net)$`)
	azureNameRe   = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)
	azureVerRe    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	allowedParams = map[string][]string{
		SchemeLocal: nil,
		SchemeAWS:   {"region", "endpoint"},
		SchemeOCI:   {"region", "endpoint"},
		SchemeAzure: {"endpoint"},
	}
)

// ParseKeyURI parses and validates a key URI. Errors are *URIError (and match
// ErrInvalidKeyURI) naming the part that is wrong and how to fix it.
func ParseKeyURI(s string) (KeyURI, error) {
	red := redactURI(s)
	fail := func(field, problem, fix string) (KeyURI, error) {
		return KeyURI{}, &URIError{URI: red, Field: field, Problem: problem, Fix: fix}
	}
	if len(s) > MaxKeyURILen {
		return fail("URI", fmt.Sprintf("is %d bytes long, more than %d", len(s), MaxKeyURILen), "")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] == 0x7f {
			return fail("URI", "contains a space or control character", "remove it")
		}
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return fail("scheme", "is missing", "write the URI as localkms://, awskms://, ocikms:// or azurekv://")
	}
	body, rawQuery, _ := strings.Cut(rest, "?")
	if strings.Contains(body, "#") || strings.Contains(rawQuery, "#") {
		return fail("URI", "has a fragment ('#')", "remove it")
	}
	allowed, known := allowedParams[scheme]
	if !known {
		return fail("scheme", fmt.Sprintf("%q is not supported", scheme), "use localkms, awskms, ocikms or azurekv")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fail("query", "is not a valid query string", "write parameters as ?name=value&name=value")
	}
	for name, vals := range q {
		if !contains(allowed, name) {
			fix := "remove it"
			if len(allowed) > 0 {
				fix = "allowed parameters: " + strings.Join(allowed, ", ")
			}
			return fail("query parameter "+strconvQuote(name), "is not supported for "+scheme, fix)
		}
		if len(vals) != 1 || vals[0] == "" {
			return fail("query parameter "+strconvQuote(name), "must appear once with a value", "")
		}
	}
	u := KeyURI{Scheme: scheme}
	if ep := q.Get("endpoint"); ep != "" {
		if err := checkEndpoint(ep); err != nil {
			return fail("endpoint", err.Error(), "use an http or https URL without credentials, e.g. https://host:443")
		}
		u.Endpoint = strings.TrimSuffix(ep, "/")
	}
	switch scheme {
	case SchemeLocal:
		if body == "" {
			return fail("key file path", "is missing", "write localkms:///absolute/path.key or localkms://relative/path.key")
		}
		clean := path.Clean(body)
		if clean != body && clean+"/" != body {
			return fail("key file path", "is not clean (has '//', '.' or '..' elements)", "write it as "+strconvQuote(clean))
		}
		if strings.HasSuffix(body, "/") {
			return fail("key file path", "names a directory", "name the key file")
		}
		u.KeyID = body
	case SchemeAWS:
		if err := parseAWS(&u, strings.TrimPrefix(body, "/"), q.Get("region")); err != nil {
			return fail(err.field, err.problem, err.fix)
		}
	case SchemeOCI:
		if err := parseOCI(&u, body, q.Get("region")); err != nil {
			return fail(err.field, err.problem, err.fix)
		}
	case SchemeAzure:
		if err := parseAzure(&u, body); err != nil {
			return fail(err.field, err.problem, err.fix)
		}
	}
	return u, nil
}

// MustParseKeyURI is ParseKeyURI for constants in tests and examples; it
// panics on error.
func MustParseKeyURI(s string) KeyURI {
	u, err := ParseKeyURI(s)
	if err != nil {
		panic(err)
	}
	return u
}

type partErr struct{ field, problem, fix string }

func parseAWS(u *KeyURI, id, region string) *partErr {
	switch {
	case id == "":
		return &partErr{"key id", "is missing", "write awskms://<key ARN>, awskms://alias/<name>?region=<r> or awskms://<key id>?region=<r>"}
	case strings.HasPrefix(id, "arn:"):
		parts := strings.SplitN(id, ":", 6)
		if len(parts) != 6 || !awsPartRe.MatchString(parts[1]) || parts[2] != "kms" {
			return &partErr{"key id", "is not a KMS ARN", "write arn:aws:kms:<region>:<account>:key/<key id>"}
		}
		if !awsRegionRe.MatchString(parts[3]) {
			return &partErr{"region", fmt.Sprintf("%q in the ARN is not an AWS region", parts[3]), "e.g. eu-west-2"}
		}
		if !awsAccountRe.MatchString(parts[4]) {
			return &partErr{"account", "in the ARN is not a 12-digit account id", ""}
		}
		res := parts[5]
		switch {
		case strings.HasPrefix(res, "key/") && awsKeyIDRe.MatchString(strings.TrimPrefix(res, "key/")):
		case awsAliasRe.MatchString(res):
		default:
			return &partErr{"key id", "ARN resource must be key/<uuid>, key/mrk-<hex> or alias/<name>", ""}
		}
		if region != "" && region != parts[3] {
			return &partErr{"region", fmt.Sprintf("parameter %q contradicts the ARN's region %q", region, parts[3]), "drop ?region= or make them agree"}
		}
		region = parts[3]
	case strings.HasPrefix(id, "alias/"):
		if !awsAliasRe.MatchString(id) {
			return &partErr{"key id", "is not a valid alias", "aliases are alias/ followed by letters, digits, '/', '_' or '-'"}
		}
	case awsKeyIDRe.MatchString(id):
	default:
		return &partErr{"key id", "is neither an ARN, an alias nor a key id", "write awskms://arn:aws:kms:<region>:<account>:key/<key id>"}
	}
	if region == "" {
		return &partErr{"region", "is missing", "use a full key ARN or add ?region=<region>"}
	}
	if !awsRegionRe.MatchString(region) {
		return &partErr{"region", fmt.Sprintf("%q is not an AWS region", region), "e.g. eu-west-2"}
	}
	u.KeyID, u.Region = id, region
	return nil
}

func parseOCI(u *KeyURI, id, region string) *partErr {
	if id == "" {
		return &partErr{"key id", "is missing", "write ocikms://<key OCID>?endpoint=<vault crypto endpoint>"}
	}
	if !ociOCIDRe.MatchString(id) || len(id) > 255 {
		return &partErr{"key id", "is not a key OCID", "key OCIDs look like ocid1.key.oc1.<region>.<vault>.<id>"}
	}
	if u.Endpoint == "" {
		return &partErr{"endpoint", "is missing", "add ?endpoint=https://<vault>-crypto.kms.<region>.oraclecloud.com (the vault's cryptographic endpoint)"}
	}
	ep, _ := url.Parse(u.Endpoint)
	host := ep.Hostname()
	if m := ociHostRe.FindStringSubmatch(host); m != nil {
		if region != "" && region != m[1] {
			return &partErr{"region", fmt.Sprintf("parameter %q contradicts the endpoint's region %q", region, m[1]), "drop ?region= or make them agree"}
		}
		if !strings.Contains(host, "-crypto.kms.") {
			return &partErr{"endpoint", "is not a cryptographic endpoint", "use the vault's <vault>-crypto.kms.<region> endpoint, not the management endpoint"}
		}
		region = m[1]
	}
	if region == "" {
		return &partErr{"region", "cannot be taken from the endpoint", "use an oraclecloud.com crypto endpoint or add ?region=<region>"}
	}
	if !ociRegionRe.MatchString(region) {
		return &partErr{"region", fmt.Sprintf("%q is not an OCI region", region), "e.g. us-ashburn-1"}
	}
	u.KeyID, u.Region = id, region
	return nil
}

func parseAzure(u *KeyURI, body string) *partErr {
	host, p, _ := strings.Cut(body, "/")
	if !azureVaultRe.MatchString(host) {
		return &partErr{"vault", fmt.Sprintf("%q is not a Key Vault or Managed HSM host", host), "write azurekv://<vault>.vault.azure.net/keys/<name>[/<version>]"}
	}
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "keys" {
		return &partErr{"key path", "must be /keys/<name> or /keys/<name>/<version>", ""}
	}
	if !azureNameRe.MatchString(parts[1]) {
		return &partErr{"key name", fmt.Sprintf("%q is not a valid key name", parts[1]), "1-127 letters, digits and '-'"}
	}
	if len(parts) == 3 {
		if !azureVerRe.MatchString(parts[2]) {
			return &partErr{"key version", "is not a 32-character hex version", "omit it to use the current version"}
		}
		u.Version = parts[2]
	}
	u.Vault, u.KeyID = host, parts[1]
	return nil
}

func checkEndpoint(ep string) error {
	pu, err := url.Parse(ep)
	switch {
	case err != nil:
		return errors.New("is not a URL")
	case pu.Scheme != "http" && pu.Scheme != "https":
		return errors.New("must be http or https")
	case pu.User != nil:
		return errors.New("must not carry credentials")
	case pu.Host == "" || pu.Hostname() == "":
		return errors.New("has no host")
	case pu.RawQuery != "" || pu.Fragment != "":
		return errors.New("must not have a query or fragment")
	case pu.Path != "" && pu.Path != "/":
		return errors.New("must not have a path")
	}
	if p := pu.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return errors.New("has an invalid port")
		}
	}
	return nil
}

// String returns the canonical form of the URI; parsing it yields an equal
// KeyURI. It never contains credentials (parsing refuses them).
func (u KeyURI) String() string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	switch u.Scheme {
	case SchemeAzure:
		b.WriteString(u.Vault)
		b.WriteString("/keys/")
		b.WriteString(u.KeyID)
		if u.Version != "" {
			b.WriteByte('/')
			b.WriteString(u.Version)
		}
	default:
		b.WriteString(u.KeyID)
	}
	q := url.Values{}
	if u.Endpoint != "" {
		q.Set("endpoint", u.Endpoint)
	}
	// The region is explicit only where the key id does not carry it.
	if u.Region != "" && !u.regionImplied() {
		q.Set("region", u.Region)
	}
	if len(q) > 0 {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('?')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(q.Get(k)) // endpoints and regions need no escaping: validated
		}
	}
	return b.String()
}

func (u KeyURI) regionImplied() bool {
	switch u.Scheme {
	case SchemeAWS:
		return strings.HasPrefix(u.KeyID, "arn:")
	case SchemeOCI:
		if u.Endpoint == "" {
			return false
		}
		ep, err := url.Parse(u.Endpoint)
		return err == nil && ociHostRe.MatchString(ep.Hostname())
	}
	return false
}

// IsZero reports whether u is the zero KeyURI.
func (u KeyURI) IsZero() bool { return u.Scheme == "" }

// Unversioned returns u without a pinned version: the name of the key across
// its versions (what tenants enroll and key status is tracked for).
func (u KeyURI) Unversioned() KeyURI { u.Version = ""; return u }

// EndpointID names the KMS endpoint that serves u: all keys with the same
// EndpointID share one circuit breaker and one rate limiter. It has bounded
// cardinality (one per region or vault) and carries no key id.
func (u KeyURI) EndpointID() string {
	switch u.Scheme {
	case SchemeLocal:
		return SchemeLocal
	case SchemeAWS:
		if u.Endpoint != "" {
			return SchemeAWS + ":" + u.Region + ":" + u.Endpoint
		}
		return SchemeAWS + ":" + u.Region
	case SchemeOCI:
		return SchemeOCI + ":" + u.Region + ":" + u.Endpoint
	case SchemeAzure:
		if u.Endpoint != "" {
			return SchemeAzure + ":" + u.Vault + ":" + u.Endpoint
		}
		return SchemeAzure + ":" + u.Vault
	}
	return u.Scheme
}

// MarshalText implements encoding.TextMarshaler (canonical form).
func (u KeyURI) MarshalText() ([]byte, error) {
	if u.IsZero() {
		return nil, nil
	}
	return []byte(u.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with full validation.
func (u *KeyURI) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*u = KeyURI{}
		return nil
	}
	p, err := ParseKeyURI(string(b))
	if err != nil {
		return err
	}
	*u = p
	return nil
}

// redactURI keeps the scheme, key part and query parameter names of s and
// replaces every query value, so errors can quote the URI safely.
func redactURI(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	body, rawQuery, ok := strings.Cut(s, "?")
	if i := strings.Index(body, "@"); i >= 0 {
		// userinfo: drop it entirely
		if j := strings.Index(body, "://"); j >= 0 && j < i {
			body = body[:j+3] + "REDACTED@" + body[i+1:]
		}
	}
	if !ok {
		return body
	}
	var parts []string
	for _, kv := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		// Regions and endpoints are not secret and help the reader; anything
		// else, or an endpoint carrying credentials, is hidden.
		if (k == "region" || k == "endpoint") && !strings.Contains(v, "@") {
			parts = append(parts, kv)
			continue
		}
		parts = append(parts, k+"=REDACTED")
	}
	return body + "?" + strings.Join(parts, "&")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }
