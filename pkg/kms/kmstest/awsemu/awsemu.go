package awsemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmsapi "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
	"github.com/nsmithuk/local-kms/src/handler"
	"github.com/sirupsen/logrus"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
)

// Defaults of Start.
const (
	DefaultRegion  = "eu-west-2"
	DefaultAccount = "111122223333"
)

// Test credentials every emulator accepts (Credentials). They are not
// secret: they only open emulators.
const (
	AccessKeyID     = "AKIAKEYWARDEMULATOR1"
	SecretAccessKey = "keyward-emulator-secret-access-key-000001"
)

// internalRegion and internalAccount are what local-kms's package globals
// are set to, once per process. Each emulator rewrites ARNs between its own
// region and account and these (see Emulator), so emulators of several
// regions and accounts coexist. The region is one no AWS region or caller
// uses, so an ARN of another region is never mistaken for a local key.
const (
	internalRegion  = "zz-emulated-1"
	internalAccount = DefaultAccount
)

var globalsOnce sync.Once

// setGlobals sets local-kms's configuration globals. It runs once, before
// any emulator serves a request, and nothing writes them afterwards.
func setGlobals() {
	globalsOnce.Do(func() {
		config.AWSRegion = internalRegion
		config.AWSAccountId = internalAccount
		config.DatabasePath = "" // unused: each emulator opens its own database
	})
}

var (
	regionRe  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d{1,2}$`)
	accountRe = regexp.MustCompile(`^\d{12}$`)
)

// Emulator is an in-process AWS KMS emulator: local-kms's request handlers
// behind a kmstest.Server (fixed loopback port, faults, request log), with
// SigV4 checking of the data-plane requests. Close it when done.
type Emulator struct {
	// URL is the endpoint (http://127.0.0.1:<port>); key URIs name it with
	// ?endpoint=.
	URL string
	// Region and Account are those of the emulated KMS: they appear in
	// every key and alias ARN.
	Region  string
	Account string
	// Server controls faults (Server.Faults) and holds the request log of
	// the data plane. Admin operations of the Emulator bypass it.
	Server *kmstest.Server

	db     *data.Database
	logger *logrus.Logger
	dir    string
	rmDir  bool
	admin  *kmsapi.Client
	toInt  *strings.Replacer // external ARNs → local-kms's
	toExt  *strings.Replacer // local-kms's ARNs → external

	mu      sync.Mutex
	creds   map[string]aws.Credentials // accepted credentials by access key id
	signers []string                   // access key ids of data-plane requests

	life   sync.RWMutex // held shared while a request uses db
	closed bool
}

// Option configures Start.
type Option func(*startOptions)

type startOptions struct {
	region, account, dir, addr string
}

// WithAddr listens on addr (host:port) instead of a free loopback port: key
// URIs name the endpoint, so an emulator whose keys must outlive a restart
// (keyward dev, with WithDataDir) needs a fixed one.
func WithAddr(addr string) Option { return func(o *startOptions) { o.addr = addr } }

// WithRegion sets the emulated region (default DefaultRegion).
func WithRegion(region string) Option { return func(o *startOptions) { o.region = region } }

// WithAccount sets the emulated account id (default DefaultAccount).
func WithAccount(account string) Option { return func(o *startOptions) { o.account = account } }

// WithDataDir keeps the emulator's key database in dir, which Close leaves in
// place (default: a temporary directory removed by Close). One emulator at a
// time may use a directory.
func WithDataDir(dir string) Option { return func(o *startOptions) { o.dir = dir } }

// Start starts an emulator on a free loopback port.
func Start(opts ...Option) (*Emulator, error) {
	o := startOptions{region: DefaultRegion, account: DefaultAccount}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if !regionRe.MatchString(o.region) {
		return nil, fmt.Errorf("awsemu: %q is not an AWS region name", o.region)
	}
	if !accountRe.MatchString(o.account) {
		return nil, fmt.Errorf("awsemu: account %q is not a 12-digit account id", o.account)
	}
	setGlobals()

	e := &Emulator{
		Region:  o.region,
		Account: o.account,
		dir:     o.dir,
		creds:   map[string]aws.Credentials{},
	}
	if e.dir == "" {
		dir, err := os.MkdirTemp("", "keyward-awsemu-")
		if err != nil {
			return nil, fmt.Errorf("awsemu: %w", err)
		}
		e.dir, e.rmDir = dir, true
	}
	db, err := openDatabase(e.dir)
	if err != nil {
		e.removeDir()
		return nil, err
	}
	e.db = db

	ext := "arn:aws:kms:" + e.Region + ":" + e.Account + ":"
	in := "arn:aws:kms:" + internalRegion + ":" + internalAccount + ":"
	e.toInt = strings.NewReplacer(ext, in)
	e.toExt = strings.NewReplacer(in, ext,
		`"AWSAccountId":"`+internalAccount+`"`, `"AWSAccountId":"`+e.Account+`"`,
		"arn:aws:iam::"+internalAccount+":", "arn:aws:iam::"+e.Account+":")

	e.logger = logrus.New()
	e.logger.Out = io.Discard
	e.logger.SetLevel(logrus.PanicLevel)

	e.AllowCredentials(aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey})

	var sopts []kmstest.ServerOption
	if o.addr != "" {
		sopts = append(sopts, kmstest.WithAddr(o.addr))
	}
	srv, err := kmstest.NewServer(http.HandlerFunc(e.serveDataPlane), Classify, Renderer{}, sopts...)
	if err != nil {
		e.db.Close()
		e.removeDir()
		return nil, fmt.Errorf("awsemu: %w", err)
	}
	e.Server, e.URL = srv, srv.URL

	e.admin = kmsapi.New(kmsapi.Options{
		Region:       e.Region,
		BaseEndpoint: aws.String(e.URL),
		Credentials:  e.Credentials(),
		HTTPClient:   adminClient{e},
		Retryer:      aws.NopRetryer{},
	})
	return e, nil
}

// openDatabase opens local-kms's database in dir; data.NewDatabase panics on
// failure (e.g. the directory is locked by another emulator).
func openDatabase(dir string) (db *data.Database, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("awsemu: opening the key database in %s: %v", dir, r)
		}
	}()
	return data.NewDatabase(dir), nil
}

// StartT starts an emulator for a test or benchmark and closes it when the
// test ends; it fails the test if the emulator does not start.
func StartT(t testing.TB, opts ...Option) *Emulator {
	t.Helper()
	e, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// Close stops the server, releases hanging requests, closes the database
// and removes the temporary data directory. It is safe to call twice.
func (e *Emulator) Close() {
	e.Server.Close()
	e.life.Lock()
	defer e.life.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	e.db.Close()
	e.removeDir()
}

func (e *Emulator) removeDir() {
	if e.rmDir {
		_ = os.RemoveAll(e.dir)
	}
}

// Credentials returns the static test credentials every emulator accepts.
func (e *Emulator) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")
}

// AllowCredentials makes the emulator accept requests signed with creds
// (e.g. the temporary credentials an STS stand-in hands out); with a
// SessionToken, requests must carry it.
func (e *Emulator) AllowCredentials(creds aws.Credentials) {
	e.mu.Lock()
	e.creds[creds.AccessKeyID] = creds
	e.mu.Unlock()
}

// AccessKeyIDs returns the access key ids that signed the data-plane
// requests received so far, in order (admin operations not included).
func (e *Emulator) AccessKeyIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.signers...)
}

// Provider returns an awskms provider with the emulator's credentials;
// opts come after them and may override them. Key URIs from CreateKey carry
// the emulator's endpoint and region.
func (e *Emulator) Provider(ctx context.Context, opts ...awskms.Option) (*awskms.Provider, error) {
	return awskms.New(ctx, append([]awskms.Option{awskms.WithCredentials(e.Credentials())}, opts...)...)
}

// KeyURI returns the key URI of a key ARN, id or alias served by this
// emulator (with ?endpoint= and, for ids and aliases, ?region=).
func (e *Emulator) KeyURI(keyID string) (kms.KeyURI, error) {
	s := "awskms://" + keyID + "?endpoint=" + e.URL
	if !strings.HasPrefix(keyID, "arn:") {
		s += "&region=" + e.Region
	}
	return kms.ParseKeyURI(s)
}

// MissingKey returns a well-formed key ARN URI of this emulator naming no
// key.
func (e *Emulator) MissingKey() kms.KeyURI {
	u, err := e.KeyURI(e.ARN("key/" + newUUID()))
	if err != nil {
		panic(err) // a bug: the ARN is built from validated parts
	}
	return u
}

// ARN returns the ARN of a resource ("key/<id>", "alias/<name>") in this
// emulator's region and account.
func (e *Emulator) ARN(resource string) string {
	return "arn:aws:kms:" + e.Region + ":" + e.Account + ":" + resource
}

// CreateKey creates a symmetric encryption key and returns its key ARN URI
// (with ?endpoint=URL).
func (e *Emulator) CreateKey(ctx context.Context) (kms.KeyURI, error) {
	out, err := e.admin.CreateKey(ctx, &kmsapi.CreateKeyInput{
		KeySpec:     kmstypes.KeySpecSymmetricDefault,
		KeyUsage:    kmstypes.KeyUsageTypeEncryptDecrypt,
		Description: aws.String("keyward test key"),
	})
	if err != nil {
		return kms.KeyURI{}, fmt.Errorf("awsemu: CreateKey: %w", err)
	}
	if out.KeyMetadata == nil || aws.ToString(out.KeyMetadata.Arn) == "" {
		return kms.KeyURI{}, errors.New("awsemu: CreateKey returned no key ARN")
	}
	return e.KeyURI(*out.KeyMetadata.Arn)
}

// CreateAlias creates alias ("alias/<name>" or "<name>") for key and
// returns the URI awskms://alias/<name>?endpoint=URL&region=Region.
func (e *Emulator) CreateAlias(ctx context.Context, alias string, key kms.KeyURI) (kms.KeyURI, error) {
	if !strings.HasPrefix(alias, "alias/") {
		alias = "alias/" + alias
	}
	if _, err := e.admin.CreateAlias(ctx, &kmsapi.CreateAliasInput{
		AliasName:   aws.String(alias),
		TargetKeyId: aws.String(key.KeyID),
	}); err != nil {
		return kms.KeyURI{}, fmt.Errorf("awsemu: CreateAlias: %w", err)
	}
	return e.KeyURI(alias)
}

// DisableKey disables key (as the tenant would in the console).
func (e *Emulator) DisableKey(ctx context.Context, key kms.KeyURI) error {
	_, err := e.admin.DisableKey(ctx, &kmsapi.DisableKeyInput{KeyId: aws.String(key.KeyID)})
	return wrap("DisableKey", err)
}

// EnableKey enables key.
func (e *Emulator) EnableKey(ctx context.Context, key kms.KeyURI) error {
	_, err := e.admin.EnableKey(ctx, &kmsapi.EnableKeyInput{KeyId: aws.String(key.KeyID)})
	return wrap("EnableKey", err)
}

// ScheduleDeletion schedules key for deletion in days (7-30) days; the key
// is unusable (KMSInvalidStateException, "pending deletion") meanwhile.
func (e *Emulator) ScheduleDeletion(ctx context.Context, key kms.KeyURI, days int) error {
	_, err := e.admin.ScheduleKeyDeletion(ctx, &kmsapi.ScheduleKeyDeletionInput{
		KeyId:               aws.String(key.KeyID),
		PendingWindowInDays: aws.Int32(int32(days)),
	})
	return wrap("ScheduleKeyDeletion", err)
}

// CancelDeletion cancels a scheduled deletion. Unlike AWS, which leaves the
// key disabled, local-kms enables it again.
func (e *Emulator) CancelDeletion(ctx context.Context, key kms.KeyURI) error {
	_, err := e.admin.CancelKeyDeletion(ctx, &kmsapi.CancelKeyDeletionInput{KeyId: aws.String(key.KeyID)})
	return wrap("CancelKeyDeletion", err)
}

func wrap(op string, err error) error {
	if err != nil {
		return fmt.Errorf("awsemu: %s: %w", op, err)
	}
	return nil
}

// adminClient hands the admin SDK client's requests straight to the
// local-kms handlers: no faults, no request log, no signature check, so
// tests can reconfigure keys while the data plane is failing and assert the
// data plane's request log alone.
type adminClient struct{ e *Emulator }

func (c adminClient) Do(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	c.e.serveAPI(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// serveDataPlane checks the signature, records the signer and serves the
// request.
func (e *Emulator) serveDataPlane(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "could not read the request body")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if fail := e.verify(r, body); fail != nil {
		writeError(w, fail.status, fail.code, fail.msg)
		return
	}
	e.serveAPI(w, r)
}

// serveAPI is local-kms's dispatch (src.HandleRequest) with a silent logger,
// ARN rewriting between the emulated and local-kms's region and account,
// AWS-shaped errors for unknown operations, and panics turned into errors.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path != "/" && r.URL.Path != "":
		writeError(w, http.StatusNotFound, "UnknownOperationException", "")
		return
	case r.Method != http.MethodPost:
		writeError(w, http.StatusMethodNotAllowed, "UnknownOperationException", "")
		return
	case !strings.Contains(r.Header.Get("Content-Type"), "json"):
		writeError(w, http.StatusUnsupportedMediaType, "SerializationException", "only JSON content types are accepted")
		return
	}
	service, method, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	fn, ok := methods[method]
	if service != "TrentService" || !ok {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "could not read the request body")
		return
	}
	body = []byte(e.toInt.Replace(string(body)))
	var blobKey string // the key an incoming ciphertext names
	body, err = mapBlob(body, func(b []byte) ([]byte, error) {
		local, key, err := unwrapBlob(b)
		blobKey = key
		return local, err
	})
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidCiphertextException", "")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	e.life.RLock()
	defer e.life.RUnlock()
	if e.closed {
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the emulator is closed")
		return
	}
	resp := e.call(method, fn, r)
	if resp.Code == http.StatusOK {
		resp = e.finish(method, blobKey, resp)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", newUUID())
	w.WriteHeader(resp.Code)
	_, _ = io.WriteString(w, e.toExt.Replace(resp.Body))
}

// finish turns a successful local-kms response into AWS's: a Decrypt whose
// ciphertext names another key than the one that decrypted it is refused,
// and outgoing ciphertexts take the emulated form (see blob.go).
func (e *Emulator) finish(method, blobKey string, resp handler.Response) handler.Response {
	if method == "Decrypt" && blobKey != "" {
		var out struct{ KeyId string }
		if json.Unmarshal([]byte(resp.Body), &out) != nil || out.KeyId != blobKey {
			return handler.New400ExceptionResponse("IncorrectKeyException",
				"The key ID in the request does not identify a CMK that can perform this operation.")
		}
	}
	body, err := mapBlob([]byte(resp.Body), wrapBlob)
	if err != nil {
		return handler.NewResponse(http.StatusInternalServerError, map[string]string{
			"__type": "KMSInternalException", "message": err.Error()})
	}
	resp.Body = string(body)
	return resp
}

// call runs one local-kms handler method. local-kms panics on some malformed
// ciphertexts (a blob too short for its nonce): such a Decrypt is answered
// as AWS would, with InvalidCiphertextException; any other panic is a
// KMSInternalException.
func (e *Emulator) call(method string, fn func(*handler.RequestHandler) handler.Response, r *http.Request) (resp handler.Response) {
	defer func() {
		if p := recover(); p != nil {
			if method == "Decrypt" {
				resp = handler.New400ExceptionResponse("InvalidCiphertextException", "")
				return
			}
			resp = handler.NewResponse(http.StatusInternalServerError, map[string]string{
				"__type": "KMSInternalException", "message": fmt.Sprintf("local-kms failed: %v", p)})
		}
	}()
	return fn(handler.NewRequestHandler(r, e.logger, e.db))
}

// methods are local-kms's operations by name (replacing its reflection-based
// dispatch).
var methods = map[string]func(*handler.RequestHandler) handler.Response{
	"CancelKeyDeletion":                   (*handler.RequestHandler).CancelKeyDeletion,
	"CreateAlias":                         (*handler.RequestHandler).CreateAlias,
	"CreateKey":                           (*handler.RequestHandler).CreateKey,
	"Decrypt":                             (*handler.RequestHandler).Decrypt,
	"DeleteAlias":                         (*handler.RequestHandler).DeleteAlias,
	"DeleteImportedKeyMaterial":           (*handler.RequestHandler).DeleteImportedKeyMaterial,
	"DescribeKey":                         (*handler.RequestHandler).DescribeKey,
	"DisableKey":                          (*handler.RequestHandler).DisableKey,
	"DisableKeyRotation":                  (*handler.RequestHandler).DisableKeyRotation,
	"EnableKey":                           (*handler.RequestHandler).EnableKey,
	"EnableKeyRotation":                   (*handler.RequestHandler).EnableKeyRotation,
	"Encrypt":                             (*handler.RequestHandler).Encrypt,
	"GenerateDataKey":                     (*handler.RequestHandler).GenerateDataKey,
	"GenerateDataKeyPair":                 (*handler.RequestHandler).GenerateDataKeyPair,
	"GenerateDataKeyPairWithoutPlaintext": (*handler.RequestHandler).GenerateDataKeyPairWithoutPlaintext,
	"GenerateDataKeyWithoutPlaintext":     (*handler.RequestHandler).GenerateDataKeyWithoutPlaintext,
	"GenerateMac":                         (*handler.RequestHandler).GenerateMac,
	"GenerateRandom":                      (*handler.RequestHandler).GenerateRandom,
	"GetKeyPolicy":                        (*handler.RequestHandler).GetKeyPolicy,
	"GetKeyRotationStatus":                (*handler.RequestHandler).GetKeyRotationStatus,
	"GetParametersForImport":              (*handler.RequestHandler).GetParametersForImport,
	"GetPublicKey":                        (*handler.RequestHandler).GetPublicKey,
	"ImportKeyMaterial":                   (*handler.RequestHandler).ImportKeyMaterial,
	"ListAliases":                         (*handler.RequestHandler).ListAliases,
	"ListKeys":                            (*handler.RequestHandler).ListKeys,
	"ListResourceTags":                    (*handler.RequestHandler).ListResourceTags,
	"PutKeyPolicy":                        (*handler.RequestHandler).PutKeyPolicy,
	"ReEncrypt":                           (*handler.RequestHandler).ReEncrypt,
	"ScheduleKeyDeletion":                 (*handler.RequestHandler).ScheduleKeyDeletion,
	"Sign":                                (*handler.RequestHandler).Sign,
	"TagResource":                         (*handler.RequestHandler).TagResource,
	"UntagResource":                       (*handler.RequestHandler).UntagResource,
	"UpdateAlias":                         (*handler.RequestHandler).UpdateAlias,
	"UpdateKeyDescription":                (*handler.RequestHandler).UpdateKeyDescription,
	"Verify":                              (*handler.RequestHandler).Verify,
	"VerifyMac":                           (*handler.RequestHandler).VerifyMac,
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
