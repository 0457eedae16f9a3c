package awskms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
)

var ec = kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

// rig is an emulator with two keys, a disabled one, and a provider wired to
// it.
type rig struct {
	e                       *awsemu.Emulator
	p                       *awskms.Provider
	a, b, disabled, missing kms.KeyURI
}

func newRig(t testing.TB, opts ...awskms.Option) *rig {
	t.Helper()
	ctx := context.Background()
	r := &rig{e: awsemu.StartT(t)}
	var err error
	for _, k := range []*kms.KeyURI{&r.a, &r.b, &r.disabled} {
		if *k, err = r.e.CreateKey(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.e.DisableKey(ctx, r.disabled); err != nil {
		t.Fatal(err)
	}
	r.missing = r.e.MissingKey()
	if r.p, err = r.e.Provider(ctx, opts...); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) conformance(p kms.Provider) kmstest.ConformanceConfig {
	return kmstest.ConformanceConfig{Provider: p, KeyA: r.a, KeyB: r.b, DisabledKey: r.disabled, MissingKey: r.missing}
}

func TestConformance(t *testing.T) {
	r := newRig(t)
	kmstest.RunConformance(t, r.conformance(r.p))
}

func TestConformanceThroughClient(t *testing.T) {
	r := newRig(t)
	kmstest.RunConformance(t, r.conformance(kms.NewClient(kms.WithProvider(kms.SchemeAWS, r.p))))
}

// The key version is the ARN of the key that wrapped: the same for the key
// ARN, its key id and its alias.
func TestKeyVersionIsKeyARN(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	alias, err := r.e.CreateAlias(ctx, "keyward/acme", r.a)
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.e.KeyURI(strings.TrimPrefix(r.a.KeyID, r.e.ARN("key/")))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []kms.KeyURI{r.a, id, alias} {
		dk, err := r.p.GenerateDataKey(ctx, key, ec)
		if err != nil {
			t.Fatalf("GenerateDataKey(%s) err = %v", key, err)
		}
		dk.Destroy()
		if dk.KeyVersion != r.a.KeyID {
			t.Errorf("GenerateDataKey(%s) version = %q, want the key ARN %q", key, dk.KeyVersion, r.a.KeyID)
		}
		pt := kms.NewSecret(bytes.Repeat([]byte{7}, 32))
		w, err := r.p.Encrypt(ctx, key, pt, ec)
		if err != nil {
			t.Fatalf("Encrypt(%s) err = %v", key, err)
		}
		if w.KeyVersion != r.a.KeyID {
			t.Errorf("Encrypt(%s) version = %q, want %q", key, w.KeyVersion, r.a.KeyID)
		}
	}
}

// Key ids in every accepted form reach the same key: a ciphertext made
// through one form unwraps through the others.
func TestKeyIDForms(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	alias, err := r.e.CreateAlias(ctx, "alias/forms", r.a)
	if err != nil {
		t.Fatal(err)
	}
	aliasARN, err := r.e.KeyURI(r.e.ARN("alias/forms"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.e.KeyURI(strings.TrimPrefix(r.a.KeyID, r.e.ARN("key/")))
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]kms.KeyURI{"key ARN": r.a, "alias": alias, "alias ARN": aliasARN, "key id": id}
	for from, k1 := range forms {
		dk, err := r.p.GenerateDataKey(ctx, k1, ec)
		if err != nil {
			t.Fatalf("GenerateDataKey(%s %s) err = %v", from, k1, err)
		}
		for to, k2 := range forms {
			got, err := r.p.Decrypt(ctx, k2, dk.Ciphertext, ec)
			if err != nil {
				t.Errorf("Decrypt(%s) of a %s ciphertext err = %v", to, from, err)
				continue
			}
			if !got.Equal(dk.Plaintext) {
				t.Errorf("Decrypt(%s) of a %s ciphertext returned other bytes", to, from)
			}
			got.Destroy()
		}
		// The alias resolves to key A only: key B refuses it.
		if _, err := r.p.Decrypt(ctx, r.b, dk.Ciphertext, ec); kms.CodeOf(err) != kms.CodeInvalidCiphertext {
			t.Errorf("Decrypt(key B) of a %s ciphertext err = %v, want %s", from, err, kms.CodeInvalidCiphertext)
		}
		dk.Destroy()
	}
}

// A ciphertext wrapped for one tenant does not unwrap in another tenant's
// context, and a data key made in a context unwraps only in it.
func TestEncryptionContextEnforced(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	dk, err := r.p.GenerateDataKey(ctx, r.a, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	other := kms.NewEncryptionContext("globex", kms.PurposeAssetSeed)
	_, err = r.p.Decrypt(ctx, r.a, dk.Ciphertext, other)
	if !errors.Is(err, kms.ErrInvalidCiphertext) {
		t.Fatalf("Decrypt with tenant globex err = %v, want %v", err, kms.ErrInvalidCiphertext)
	}
	var sdkErr *kmstypes.InvalidCiphertextException
	if !errors.As(err, &sdkErr) {
		t.Errorf("Decrypt with tenant globex: the SDK's InvalidCiphertextException is not reachable with errors.As: %v", err)
	}
}

// recorder records the requests a provider sends (a RoundTripper in front
// of the default transport).
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	target string
	body   map[string]any
}

func (rec *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{req.Header.Get("X-Amz-Target"), m})
	rec.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (rec *recorder) requests() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.reqs)
}

// Every call carries the encryption context it was given (so the tenant's
// CloudTrail shows who and why), GenerateDataKey asks for AES_256, and
// Decrypt names the key.
func TestRequestsCarryContextAndKeyID(t *testing.T) {
	rec := &recorder{}
	r := newRig(t, awskms.WithHTTPClient(&http.Client{Transport: rec}))
	ctx := t.Context()
	dk, err := r.p.GenerateDataKey(ctx, r.a, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	if _, err := r.p.Encrypt(ctx, r.a, dk.Plaintext, ec); err != nil {
		t.Fatal(err)
	}
	pt, err := r.p.Decrypt(ctx, r.a, dk.Ciphertext, ec)
	if err != nil {
		t.Fatal(err)
	}
	pt.Destroy()

	reqs := rec.requests()
	var targets []string
	for _, q := range reqs {
		targets = append(targets, q.target)
		got, _ := json.Marshal(q.body["EncryptionContext"])
		want, _ := json.Marshal(map[string]string(ec))
		if !bytes.Equal(got, want) {
			t.Errorf("%s EncryptionContext = %s, want %s", q.target, got, want)
		}
		if q.body["KeyId"] != r.a.KeyID {
			t.Errorf("%s KeyId = %v, want %s", q.target, q.body["KeyId"], r.a.KeyID)
		}
	}
	want := []string{"TrentService.GenerateDataKey", "TrentService.Encrypt", "TrentService.Decrypt"}
	if !slices.Equal(targets, want) {
		t.Fatalf("targets = %q, want %q", targets, want)
	}
	if reqs[0].body["KeySpec"] != "AES_256" || reqs[0].body["NumberOfBytes"] != nil {
		t.Errorf("GenerateDataKey body = %v, want KeySpec AES_256 and no NumberOfBytes", reqs[0].body)
	}
}

// A key in another region, served by another emulator, works through the
// same provider (one SDK client per region and endpoint, each signing for
// its region: the emulators check the credential scope).
func TestKeyInAnotherRegion(t *testing.T) {
	ctx := t.Context()
	primary := awsemu.StartT(t, awsemu.WithRegion("eu-west-2"))
	replica := awsemu.StartT(t, awsemu.WithRegion("eu-west-1"))
	k2, err := primary.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := replica.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Region != "eu-west-2" || k1.Region != "eu-west-1" || !strings.HasPrefix(k1.KeyID, "arn:aws:kms:eu-west-1:111122223333:key/") {
		t.Fatalf("keys %s and %s: want regions eu-west-2 and eu-west-1", k2, k1)
	}
	p, err := primary.Provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dk1, err := p.GenerateDataKey(ctx, k1, ec)
	if err != nil {
		t.Fatalf("GenerateDataKey(eu-west-1 key) err = %v", err)
	}
	defer dk1.Destroy()
	if dk1.KeyVersion != k1.KeyID {
		t.Errorf("version = %q, want %q", dk1.KeyVersion, k1.KeyID)
	}
	dk2, err := p.GenerateDataKey(ctx, k2, ec)
	if err != nil {
		t.Fatalf("GenerateDataKey(eu-west-2 key) err = %v", err)
	}
	defer dk2.Destroy()
	// The replica region does not hold the primary's key.
	wrongEndpoint, err := kms.ParseKeyURI("awskms://" + strings.Replace(k2.KeyID, "eu-west-2", "eu-west-1", 1) + "?endpoint=" + replica.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Decrypt(ctx, wrongEndpoint, dk2.Ciphertext, ec); kms.CodeOf(err) != kms.CodeKeyNotFound {
		t.Errorf("Decrypt of the eu-west-2 key's ciphertext in eu-west-1 err = %v, want %s", err, kms.CodeKeyNotFound)
	}
	if n := len(primary.Server.Faults.Requests()); n != 1 {
		t.Errorf("eu-west-2 emulator got %d requests, want 1", n)
	}
	if n := len(replica.Server.Faults.Requests()); n != 2 {
		t.Errorf("eu-west-1 emulator got %d requests, want 2", n)
	}
}

// Input the provider refuses without a call.
func TestInvalidInput(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	local := kms.MustParseKeyURI("localkms://a.key")
	noRegion := r.a
	noRegion.Region = ""
	tooLong := make([]byte, awskms.MaxCiphertextLen+1)
	cases := []struct {
		name string
		call func() error
		want kms.Code
	}{
		{"localkms URI", func() error { _, err := r.p.GenerateDataKey(ctx, local, ec); return err }, kms.CodeInvalidArgument},
		{"no region", func() error { _, err := r.p.GenerateDataKey(ctx, noRegion, ec); return err }, kms.CodeInvalidArgument},
		{"invalid context", func() error {
			_, err := r.p.GenerateDataKey(ctx, r.a, kms.EncryptionContext{"tenant": ""})
			return err
		}, kms.CodeInvalidArgument},
		{"plaintext over 4096 bytes", func() error {
			_, err := r.p.Encrypt(ctx, r.a, kms.NewSecret(make([]byte, kms.MaxPlaintextLen+1)), ec)
			return err
		}, kms.CodeInvalidArgument},
		{"empty ciphertext", func() error { _, err := r.p.Decrypt(ctx, r.a, nil, ec); return err }, kms.CodeInvalidCiphertext},
		{"ciphertext over 6144 bytes", func() error { _, err := r.p.Decrypt(ctx, r.a, tooLong, ec); return err }, kms.CodeInvalidCiphertext},
	}
	for _, tc := range cases {
		if got := kms.CodeOf(tc.call()); got != tc.want {
			t.Errorf("%s: code = %s, want %s", tc.name, got, tc.want)
		}
	}
	if n := len(r.e.Server.Faults.Requests()); n != 0 {
		t.Errorf("refused input reached the KMS: %d requests", n)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	cases := map[string][]awskms.Option{
		"nil credentials":        {awskms.WithCredentials(nil)},
		"zero attempts":          {awskms.WithMaxAttempts(0)},
		"negative backoff":       {awskms.WithRetryMaxBackoff(-1)},
		"user ARN as role":       {awskms.WithAssumeRole("arn:aws:iam::111122223333:user/keyward", "")},
		"short external id":      {awskms.WithAssumeRole("arn:aws:iam::111122223333:role/keyward", "x")},
		"STS endpoint alone":     {awskms.WithSTSEndpoint("http://127.0.0.1:1")},
		"STS endpoint not a URL": {awskms.WithAssumeRole("arn:aws:iam::111122223333:role/keyward", ""), awskms.WithSTSEndpoint("127.0.0.1:1")},
	}
	for name, opts := range cases {
		if p, err := awskms.New(t.Context(), opts...); err == nil {
			t.Errorf("New(%s) = %v, nil error; want an error", name, p)
		}
	}
	p, err := awskms.New(t.Context(),
		awskms.WithCredentials(credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")),
		awskms.WithAssumeRole("arn:aws:iam::111122223333:role/keyward/platform", "keyward-tenant-acme"),
		awskms.WithMaxAttempts(1), awskms.WithRetryMaxBackoff(1), awskms.WithHTTPClient(nil))
	if err != nil || p == nil {
		t.Fatalf("New with valid options = %v, %v", p, err)
	}
}

// Without WithCredentials, the standard chain is used: here, credentials
// from the environment (shared config files pointed at nothing, instance
// metadata off, so nothing outside loopback is asked).
func TestDefaultCredentialChain(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", awsemu.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsemu.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	e := awsemu.StartT(t)
	key, err := e.CreateKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p, err := awskms.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dk, err := p.GenerateDataKey(t.Context(), key, ec)
	if err != nil {
		t.Fatalf("GenerateDataKey with environment credentials err = %v", err)
	}
	dk.Destroy()
	if ids := e.AccessKeyIDs(); !slices.Equal(ids, []string{awsemu.AccessKeyID}) {
		t.Errorf("signed by %q, want the environment's %q", ids, awsemu.AccessKeyID)
	}
}

// WithMaxAttempts bounds the SDK's attempts at a failing call.
func TestRetryBudget(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []awskms.Option
		want int
	}{
		{"default", nil, awskms.DefaultMaxAttempts},
		{"one attempt", []awskms.Option{awskms.WithMaxAttempts(1)}, 1},
		{"three attempts", []awskms.Option{awskms.WithMaxAttempts(3), awskms.WithRetryMaxBackoff(5 * time.Millisecond)}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts...)
			r.e.Server.Faults.Set(kmstest.FaultServerError)
			_, err := r.p.GenerateDataKey(t.Context(), r.a, ec)
			if kms.CodeOf(err) != kms.CodeEndpointUnreachable {
				t.Fatalf("GenerateDataKey err = %v, want %s", err, kms.CodeEndpointUnreachable)
			}
			if n := len(r.e.Server.Faults.Requests()); n != tc.want {
				t.Errorf("%d attempts, want %d", n, tc.want)
			}
		})
	}
}

// The provider is safe for concurrent first use: one SDK client per region
// and endpoint, created once.
func TestConcurrentFirstUse(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		key := r.a
		if i%2 == 1 {
			key = r.b
		}
		wg.Go(func() {
			dk, err := r.p.GenerateDataKey(t.Context(), key, ec)
			if err != nil {
				errs <- err
				return
			}
			dk.Destroy()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
