package ociemu

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/ocikms"
)

// The REST paths of the crypto endpoint the emulator serves (API version
// 20180608, as the SDK's KmsCryptoClient sends them).
const (
	PathEncrypt                   = "/20180608/encrypt"
	PathDecrypt                   = "/20180608/decrypt"
	PathGenerateDataEncryptionKey = "/20180608/generateDataEncryptionKey"
)

// Operation names in the request log (kmstest.Request.Op), as OCI names
// them in audit logs and policy conditions (request.operation).
const (
	OpEncrypt                   = "Encrypt"
	OpDecrypt                   = "Decrypt"
	OpGenerateDataEncryptionKey = "GenerateDataEncryptionKey"
)

// Key lifecycle states the emulator models (OCI's KeyLifecycleStateEnum).
const (
	StateEnabled         = "ENABLED"
	StateDisabled        = "DISABLED"
	StatePendingDeletion = "PENDING_DELETION"
)

// DefaultRegion is the region of an emulator started without WithRegion.
const DefaultRegion = "us-ashburn-1"

// maxPlaintext is OCI's limit on Encrypt plaintext (bytes after base64
// decoding); maxAssociatedData its limit on the JSON form of associated data.
const (
	maxPlaintext      = 4096
	maxAssociatedData = 4096
)

// Ciphertext format of the emulator (OCI's own is opaque; like OCI's, it
// names the key version, so Decrypt needs only the key id):
//
//	base64( magic "OEK1" || version handle [16] || nonce [12] || AES-256-GCM sealed )
//	AAD = "ociemu/v1 wrap\x00" || key OCID || 0x00 || key version OCID || 0x00 || Canonical(associatedData)
const (
	ctMagic    = "OEK1"
	handleSize = 16
	nonceSize  = 12
	tagSize    = 16
	aadLabel   = "ociemu/v1 wrap\x00"
)

// Emulator emulates the cryptographic endpoint of one OCI vault: the REST
// API of GenerateDataEncryptionKey, Encrypt and Decrypt, with OCI request
// signatures verified against the API key of one test user, real
// AES-256-GCM per key version bound to the associated data, and keys that
// can be rotated, disabled, enabled and scheduled for deletion. It runs on a
// kmstest.Server (fixed loopback port, faults, request log).
type Emulator struct {
	// URL is the crypto endpoint (http://127.0.0.1:<port>, or https with WithTLS).
	URL string
	// Region is the vault's region.
	Region string
	// Server is the HTTP server: Server.Faults injects failures and logs requests.
	Server *kmstest.Server
	// TenancyOCID, UserOCID and Fingerprint name the test user's API key;
	// PrivateKeyPEM is its RSA private key (PKCS #1 PEM).
	TenancyOCID, UserOCID, Fingerprint string
	PrivateKeyPEM                      []byte

	publicKey *rsa.PublicKey
	now       func() time.Time
	regionKey string
	vault     string

	mu        sync.Mutex
	keys      map[string]*key // by key OCID
	authErrs  []error
	stateFile string
}

type key struct {
	ocid     string
	state    string
	versions []*version // the last one is current
}

type version struct {
	ocid     string
	handle   [handleSize]byte
	aead     cipher.AEAD
	material []byte // kept only when the emulator persists its state
}

// Option configures Start.
type Option func(*config)

type config struct {
	region    string
	tls       bool
	now       func() time.Time
	addr      string
	stateFile string
}

// WithAddr listens on addr (host:port) instead of a free loopback port: key
// URIs name the endpoint, so an emulator that must keep its keys across
// restarts (keyward dev) needs a fixed one.
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithStateFile keeps the emulator's API key pair, vault and keys (with
// their material) in a JSON file (mode 0600), loaded at Start and rewritten
// on every change, so a restarted emulator decrypts what it encrypted
// before. For keyward dev; never for real keys.
func WithStateFile(path string) Option { return func(c *config) { c.stateFile = path } }

// WithRegion sets the vault's region (default DefaultRegion).
func WithRegion(region string) Option { return func(c *config) { c.region = region } }

// WithTLS serves HTTPS with a self-signed certificate; Provider's HTTP
// client trusts it.
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithClock replaces the clock request dates are checked against (default
// time.Now), e.g. to make every request look stale.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

var regionNameRe = regexp.MustCompile(`^[a-z]{2,}-[a-z]+-[0-9]{1,2}$`)

// regionKeys are the three-letter keys OCI uses in OCIDs for some regions;
// others use the region name.
var regionKeys = map[string]string{
	"us-ashburn-1":   "iad",
	"us-phoenix-1":   "phx",
	"us-sanjose-1":   "sjc",
	"eu-amsterdam-1": "ams",
	"eu-frankfurt-1": "fra",
	"uk-london-1":    "lhr",
	"ap-tokyo-1":     "nrt",
	"ca-toronto-1":   "yyz",
}

// Start starts an emulator with a fresh RSA API key pair for a test user.
// Close it when done.
func Start(opts ...Option) (*Emulator, error) {
	cfg := config{region: DefaultRegion, now: time.Now}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if !regionNameRe.MatchString(cfg.region) {
		return nil, fmt.Errorf("ociemu: %q is not an OCI region name", cfg.region)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("ociemu: generating the API key: %w", err)
	}
	fp, err := Fingerprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	e := &Emulator{
		stateFile:     cfg.stateFile,
		Region:        cfg.region,
		TenancyOCID:   "ocid1.tenancy.oc1.." + randomID(52),
		UserOCID:      "ocid1.user.oc1.." + randomID(52),
		Fingerprint:   fp,
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)}),
		publicKey:     &priv.PublicKey,
		now:           cfg.now,
		regionKey:     cfg.region,
		vault:         randomID(13),
		keys:          map[string]*key{},
	}
	if k, ok := regionKeys[cfg.region]; ok {
		e.regionKey = k
	}
	if e.stateFile != "" {
		if err := e.loadState(); err != nil {
			return nil, err
		}
	}
	var sopts []kmstest.ServerOption
	if cfg.tls {
		sopts = append(sopts, kmstest.WithTLS())
	}
	if cfg.addr != "" {
		sopts = append(sopts, kmstest.WithAddr(cfg.addr))
	}
	srv, err := kmstest.NewServer(http.HandlerFunc(e.serve), Classifier, Renderer{}, sopts...)
	if err != nil {
		return nil, fmt.Errorf("ociemu: %w", err)
	}
	e.Server, e.URL = srv, srv.URL
	if err := e.saveState(); err != nil {
		srv.Close()
		return nil, err
	}
	return e, nil
}

// StartT starts an emulator for a test and closes it when the test ends.
func StartT(t testing.TB, opts ...Option) *Emulator {
	t.Helper()
	e, err := Start(opts...)
	if err != nil {
		t.Fatalf("ociemu.Start: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// Close stops the server (releasing hanging requests).
func (e *Emulator) Close() { e.Server.Close() }

// Provider returns an ocikms.Provider that signs with the test user's API
// key and talks to the emulator through its HTTP client; opts are applied
// after those (a WithHTTPClient in opts replaces the emulator's client).
func (e *Emulator) Provider(opts ...ocikms.Option) (*ocikms.Provider, error) {
	base := []ocikms.Option{
		ocikms.WithAPIKey(e.TenancyOCID, e.UserOCID, e.Fingerprint, e.PrivateKeyPEM, ""),
		ocikms.WithHTTPClient(e.Server.Client()),
	}
	return ocikms.New(append(base, opts...)...)
}

// Fingerprint returns the OCI fingerprint of an API public key: the MD5 of
// its DER (PKIX) encoding as colon-separated lowercase hex pairs.
func Fingerprint(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("ociemu: encoding the public key: %w", err)
	}
	sum := md5.Sum(der)
	pairs := make([]string, len(sum))
	for i, b := range sum {
		pairs[i] = hex.EncodeToString([]byte{b})
	}
	return strings.Join(pairs, ":"), nil
}

// CreateKey creates an enabled AES-256 key with one version and returns its
// URI: ocikms://ocid1.key.oc1.<region key>.<vault>.<id>?endpoint=<URL>&region=<region>.
func (e *Emulator) CreateKey() kms.KeyURI {
	k := &key{ocid: fmt.Sprintf("ocid1.key.oc1.%s.%s.%s", e.regionKey, e.vault, randomID(60)), state: StateEnabled}
	k.versions = append(k.versions, e.newVersion())
	e.mu.Lock()
	e.keys[k.ocid] = k
	e.mu.Unlock()
	e.mustSave()
	return e.uri(k.ocid)
}

// UnknownKey returns a well-formed URI of this vault naming no key.
func (e *Emulator) UnknownKey() kms.KeyURI {
	return e.uri(fmt.Sprintf("ocid1.key.oc1.%s.%s.%s", e.regionKey, e.vault, randomID(60)))
}

func (e *Emulator) uri(ocid string) kms.KeyURI {
	return kms.MustParseKeyURI(fmt.Sprintf("ocikms://%s?endpoint=%s&region=%s", ocid, e.URL, e.Region))
}

// RotateKey adds a new version to key and makes it current; it returns the
// new version's OCID. Every version keeps decrypting.
func (e *Emulator) RotateKey(u kms.KeyURI) (versionOCID string) {
	v := e.newVersion()
	func() {
		e.mu.Lock()
		defer e.mu.Unlock() // also when mustKey panics
		k := e.mustKey(u)
		k.versions = append(k.versions, v)
	}()
	e.mustSave()
	return v.ocid
}

// CurrentVersion returns the OCID of key's current version.
func (e *Emulator) CurrentVersion(u kms.KeyURI) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.mustKey(u)
	return k.versions[len(k.versions)-1].ocid
}

// DisableKey disables key: every operation fails with 409 IncorrectState.
func (e *Emulator) DisableKey(u kms.KeyURI) { e.setState(u, StateDisabled) }

// EnableKey enables key again (also cancelling a scheduled deletion).
func (e *Emulator) EnableKey(u kms.KeyURI) { e.setState(u, StateEnabled) }

// ScheduleDeletion puts key in PENDING_DELETION: every operation fails with
// 409 IncorrectState.
func (e *Emulator) ScheduleDeletion(u kms.KeyURI) { e.setState(u, StatePendingDeletion) }

// State returns key's lifecycle state.
func (e *Emulator) State(u kms.KeyURI) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mustKey(u).state
}

func (e *Emulator) setState(u kms.KeyURI, state string) {
	func() {
		e.mu.Lock()
		defer e.mu.Unlock() // also when mustKey panics
		e.mustKey(u).state = state
	}()
	e.mustSave()
}

// mustKey returns the key u names; the caller holds e.mu and releases it
// with defer. Naming a key the emulator does not have is a bug in the test:
// it panics.
func (e *Emulator) mustKey(u kms.KeyURI) *key {
	k := e.keys[u.KeyID]
	if k == nil {
		panic(fmt.Sprintf("ociemu: no key %s in this emulator", u.KeyID))
	}
	return k
}

// AuthFailures returns why requests were refused with 401 NotAuthenticated,
// in order; each error matches one of ErrUnsigned, ErrMalformedAuth,
// ErrUnknownKeyID, ErrMissingHeaders, ErrBadSignature, ErrBodyHash,
// ErrStaleDate.
func (e *Emulator) AuthFailures() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.authErrs...)
}

func (e *Emulator) newVersion() *version {
	material := make([]byte, 32)
	_, _ = rand.Read(material)
	v := &version{ocid: fmt.Sprintf("ocid1.keyversion.oc1.%s.%s.%s", e.regionKey, e.vault, randomID(60))}
	_, _ = rand.Read(v.handle[:])
	v.aead = newAEAD(material)
	if e.stateFile != "" {
		v.material = material
	} else {
		clear(material)
	}
	return v
}

func newAEAD(material []byte) cipher.AEAD {
	block, err := aes.NewCipher(material)
	if err != nil {
		panic(err) // 32-byte keys never fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// randomID returns n random characters of OCI's unique-id alphabet
// (lowercase base32).
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	s := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
	return s[:n]
}

// Renderer writes OCI's error responses for the kmstest faults.
type Renderer struct{}

var _ kmstest.Renderer = Renderer{}

// Throttled writes 429 TooManyRequests.
func (Renderer) Throttled(w http.ResponseWriter) {
	writeError(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests for the user.")
}

// ServerError writes 500 InternalServerError.
func (Renderer) ServerError(w http.ResponseWriter) {
	writeError(w, http.StatusInternalServerError, "InternalServerError", "Internal error occurred.")
}

// Denied writes what OCI answers when the caller's policy lacks op: 404
// NotAuthorizedOrNotFound, the same answer as for a missing key.
func (Renderer) Denied(w http.ResponseWriter, op string) {
	writeError(w, http.StatusNotFound, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found.")
}

// Classifier names the operation and key of a request for the request log:
// Encrypt, Decrypt or GenerateDataEncryptionKey by path (anything else as
// "<METHOD> <path>"), and the keyId of the JSON body.
func Classifier(r *http.Request, body []byte) (op, keyID string) {
	switch r.URL.Path {
	case PathEncrypt:
		op = OpEncrypt
	case PathDecrypt:
		op = OpDecrypt
	case PathGenerateDataEncryptionKey:
		op = OpGenerateDataEncryptionKey
	default:
		op = r.Method + " " + r.URL.Path
	}
	var b struct {
		KeyID string `json:"keyId"`
	}
	_ = json.Unmarshal(body, &b)
	return op, b.KeyID
}

// apiError is an OCI error response.
type apiError struct {
	status        int
	code, message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"code": code, "message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"InternalServerError","message":"Internal error occurred."}`)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("opc-request-id", strings.ToUpper(hex.EncodeToString(id)))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

var (
	errNotAuthenticated = &apiError{http.StatusUnauthorized, "NotAuthenticated",
		"The required information to complete authentication was not provided or was incorrect."}
	errNotFound = &apiError{http.StatusNotFound, "NotAuthorizedOrNotFound",
		"Authorization failed or requested resource not found."}
)

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

// serve is the emulator's handler, behind the kmstest faults middleware.
func (e *Emulator) serve(w http.ResponseWriter, r *http.Request) {
	var handle func([]byte) (any, *apiError)
	switch r.URL.Path {
	case PathEncrypt:
		handle = e.encrypt
	case PathDecrypt:
		handle = e.decrypt
	case PathGenerateDataEncryptionKey:
		handle = e.generateDataEncryptionKey
	default:
		writeError(w, http.StatusNotFound, "NotFound", "There is no operation supported at the URI path and HTTP method you specified in the request.")
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The target resource does not support the HTTP method.")
		return
	}
	body, err := readAll(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "CannotParseRequest", "The request body could not be read.")
		return
	}
	if err := e.authenticate(r, body); err != nil {
		e.mu.Lock()
		e.authErrs = append(e.authErrs, err)
		e.mu.Unlock()
		writeError(w, errNotAuthenticated.status, errNotAuthenticated.code, errNotAuthenticated.message)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusBadRequest, "CannotParseRequest", "The request body must be application/json.")
		return
	}
	resp, aerr := handle(body)
	if aerr != nil {
		writeError(w, aerr.status, aerr.code, aerr.message)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func readAll(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if r.Body == nil {
		return nil, nil
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, 1<<20))
	return buf.Bytes(), err
}

// decode parses a JSON body strictly: unknown fields are refused, so a
// change in what the SDK sends shows up in tests.
func decode(body []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return badRequest("CannotParseRequest", "The request is incorrectly formatted.")
	}
	return nil
}

// usableKey returns the key with id if it exists and is enabled; the caller
// holds e.mu.
func (e *Emulator) usableKey(id string) (*key, *apiError) {
	if id == "" {
		return nil, badRequest("MissingParameter", "keyId is required.")
	}
	k := e.keys[id]
	if k == nil {
		return nil, errNotFound
	}
	if k.state != StateEnabled {
		return nil, &apiError{http.StatusConflict, "IncorrectState",
			fmt.Sprintf("The key is in %s state; it must be %s for cryptographic operations.", k.state, StateEnabled)}
	}
	return k, nil
}

func checkAssociatedData(ad map[string]string) *apiError {
	if len(ad) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(ad)
	if len(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))) >= maxAssociatedData {
		return badRequest("InvalidParameter", "The length of the string representation of the associated data must be fewer than %d characters.", maxAssociatedData)
	}
	return nil
}

func checkAlgorithm(alg string) *apiError {
	if alg != "" && alg != "AES_256_GCM" {
		return badRequest("InvalidParameter", "encryptionAlgorithm %s is not supported by an AES key.", alg)
	}
	return nil
}

func additionalData(k *key, v *version, ad map[string]string) []byte {
	c := kms.EncryptionContext(ad).Canonical()
	b := make([]byte, 0, len(aadLabel)+len(k.ocid)+len(v.ocid)+2+len(c))
	b = append(b, aadLabel...)
	b = append(b, k.ocid...)
	b = append(b, 0)
	b = append(b, v.ocid...)
	b = append(b, 0)
	return append(b, c...)
}

// seal encrypts plaintext under version v of k, bound to ad; it returns the
// base64 ciphertext.
func seal(k *key, v *version, plaintext []byte, ad map[string]string) string {
	out := make([]byte, 0, len(ctMagic)+handleSize+nonceSize+len(plaintext)+tagSize)
	out = append(out, ctMagic...)
	out = append(out, v.handle[:]...)
	nonce := out[len(out) : len(out)+nonceSize]
	_, _ = rand.Read(nonce)
	out = out[:len(out)+nonceSize]
	out = v.aead.Seal(out, nonce, plaintext, additionalData(k, v, ad))
	return base64.StdEncoding.EncodeToString(out)
}

var errInvalidCiphertext = badRequest("InvalidParameter", "The ciphertext or the associated data is invalid.")

// open decrypts a base64 ciphertext of k bound to ad.
func open(k *key, ciphertext string, ad map[string]string) ([]byte, *version, *apiError) {
	ct, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil || len(ct) < len(ctMagic)+handleSize+nonceSize+tagSize || string(ct[:len(ctMagic)]) != ctMagic {
		return nil, nil, errInvalidCiphertext
	}
	handle := ct[len(ctMagic) : len(ctMagic)+handleSize]
	var v *version
	for _, kv := range k.versions {
		if bytes.Equal(kv.handle[:], handle) {
			v = kv
			break
		}
	}
	if v == nil {
		return nil, nil, errInvalidCiphertext
	}
	nonce := ct[len(ctMagic)+handleSize : len(ctMagic)+handleSize+nonceSize]
	pt, err := v.aead.Open(nil, nonce, ct[len(ctMagic)+handleSize+nonceSize:], additionalData(k, v, ad))
	if err != nil {
		return nil, nil, errInvalidCiphertext
	}
	return pt, v, nil
}

// checksum is the plaintextChecksum of a decrypted or generated plaintext
// (CRC32, decimal).
func checksum(b []byte) string { return strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10) }

type encryptRequest struct {
	KeyID               string            `json:"keyId"`
	Plaintext           *string           `json:"plaintext"`
	AssociatedData      map[string]string `json:"associatedData"`
	LoggingContext      map[string]string `json:"loggingContext"`
	KeyVersionID        string            `json:"keyVersionId"`
	EncryptionAlgorithm string            `json:"encryptionAlgorithm"`
}

type encryptResponse struct {
	Ciphertext          string `json:"ciphertext"`
	KeyID               string `json:"keyId"`
	KeyVersionID        string `json:"keyVersionId"`
	EncryptionAlgorithm string `json:"encryptionAlgorithm"`
}

func (e *Emulator) encrypt(body []byte) (any, *apiError) {
	var req encryptRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.Plaintext == nil {
		return nil, badRequest("MissingParameter", "plaintext is required.")
	}
	pt, err := base64.StdEncoding.DecodeString(*req.Plaintext)
	defer clear(pt)
	switch {
	case err != nil:
		return nil, badRequest("InvalidParameter", "plaintext must be base64.")
	case len(pt) == 0 || len(pt) > maxPlaintext:
		return nil, badRequest("InvalidParameter", "plaintext must be 1 to %d bytes.", maxPlaintext)
	}
	if aerr := checkAssociatedData(req.AssociatedData); aerr != nil {
		return nil, aerr
	}
	if aerr := checkAlgorithm(req.EncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, aerr := e.usableKey(req.KeyID)
	if aerr != nil {
		return nil, aerr
	}
	v := k.versions[len(k.versions)-1]
	if req.KeyVersionID != "" {
		if v = k.version(req.KeyVersionID); v == nil {
			return nil, badRequest("InvalidParameter", "keyVersionId is not a version of the key.")
		}
	}
	return encryptResponse{
		Ciphertext:          seal(k, v, pt, req.AssociatedData),
		KeyID:               k.ocid,
		KeyVersionID:        v.ocid,
		EncryptionAlgorithm: "AES_256_GCM",
	}, nil
}

func (k *key) version(ocid string) *version {
	for _, v := range k.versions {
		if v.ocid == ocid {
			return v
		}
	}
	return nil
}

type decryptRequest struct {
	Ciphertext          *string           `json:"ciphertext"`
	KeyID               string            `json:"keyId"`
	AssociatedData      map[string]string `json:"associatedData"`
	LoggingContext      map[string]string `json:"loggingContext"`
	KeyVersionID        string            `json:"keyVersionId"`
	EncryptionAlgorithm string            `json:"encryptionAlgorithm"`
}

type decryptResponse struct {
	Plaintext           string `json:"plaintext"`
	PlaintextChecksum   string `json:"plaintextChecksum"`
	KeyID               string `json:"keyId"`
	KeyVersionID        string `json:"keyVersionId"`
	EncryptionAlgorithm string `json:"encryptionAlgorithm"`
}

func (e *Emulator) decrypt(body []byte) (any, *apiError) {
	var req decryptRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.Ciphertext == nil {
		return nil, badRequest("MissingParameter", "ciphertext is required.")
	}
	if aerr := checkAssociatedData(req.AssociatedData); aerr != nil {
		return nil, aerr
	}
	if aerr := checkAlgorithm(req.EncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, aerr := e.usableKey(req.KeyID)
	if aerr != nil {
		return nil, aerr
	}
	pt, v, aerr := open(k, *req.Ciphertext, req.AssociatedData)
	if aerr != nil {
		return nil, aerr
	}
	defer clear(pt)
	if req.KeyVersionID != "" && req.KeyVersionID != v.ocid {
		return nil, errInvalidCiphertext
	}
	return decryptResponse{
		Plaintext:           base64.StdEncoding.EncodeToString(pt),
		PlaintextChecksum:   checksum(pt),
		KeyID:               k.ocid,
		KeyVersionID:        v.ocid,
		EncryptionAlgorithm: "AES_256_GCM",
	}, nil
}

type generateRequest struct {
	IncludePlaintextKey *bool  `json:"includePlaintextKey"`
	KeyID               string `json:"keyId"`
	KeyShape            *struct {
		Algorithm string `json:"algorithm"`
		Length    int    `json:"length"`
		CurveID   string `json:"curveId"`
	} `json:"keyShape"`
	AssociatedData map[string]string `json:"associatedData"`
	LoggingContext map[string]string `json:"loggingContext"`
}

// generateResponse is OCI's GeneratedKey: note that it carries no key id
// and no key version.
type generateResponse struct {
	Ciphertext        string `json:"ciphertext"`
	Plaintext         string `json:"plaintext,omitempty"`
	PlaintextChecksum string `json:"plaintextChecksum,omitempty"`
}

func (e *Emulator) generateDataEncryptionKey(body []byte) (any, *apiError) {
	var req generateRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	switch {
	case req.IncludePlaintextKey == nil:
		return nil, badRequest("MissingParameter", "includePlaintextKey is required.")
	case req.KeyShape == nil:
		return nil, badRequest("MissingParameter", "keyShape is required.")
	case req.KeyShape.Algorithm != "AES" || req.KeyShape.CurveID != "":
		return nil, badRequest("InvalidParameter", "Data encryption keys must be AES keys.")
	case req.KeyShape.Length != 16 && req.KeyShape.Length != 24 && req.KeyShape.Length != 32:
		return nil, badRequest("InvalidParameter", "keyShape.length must be 16, 24 or 32 (bytes).")
	}
	if aerr := checkAssociatedData(req.AssociatedData); aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, aerr := e.usableKey(req.KeyID)
	if aerr != nil {
		return nil, aerr
	}
	dek := make([]byte, req.KeyShape.Length)
	_, _ = rand.Read(dek)
	defer clear(dek)
	resp := generateResponse{Ciphertext: seal(k, k.versions[len(k.versions)-1], dek, req.AssociatedData)}
	if *req.IncludePlaintextKey {
		resp.Plaintext = base64.StdEncoding.EncodeToString(dek)
		resp.PlaintextChecksum = checksum(dek)
	}
	return resp, nil
}
