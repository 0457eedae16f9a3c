package ocikms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/kms/ocikms"
	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/keymanagement"
)

var ec = kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

// setup starts an emulator and a provider for it.
func setup(t *testing.T, emuOpts []ociemu.Option, opts ...ocikms.Option) (*ociemu.Emulator, *ocikms.Provider) {
	t.Helper()
	e := ociemu.StartT(t, emuOpts...)
	p, err := e.Provider(opts...)
	if err != nil {
		t.Fatalf("Provider() err = %v", err)
	}
	return e, p
}

func wantCode(t *testing.T, what string, err error, want kms.Code) {
	t.Helper()
	var ke *kms.Error
	if !errors.As(err, &ke) {
		t.Fatalf("%s err = %v (%T), want *kms.Error with code %s", what, err, err, want)
	}
	if got := kms.CodeOf(err); got != want {
		t.Fatalf("%s code = %s, want %s (err %v)", what, got, want, err)
	}
	if ke.Provider != kms.SchemeOCI || ke.Op == "" {
		t.Errorf("%s: Provider, Op = %q, %q; want ocikms and an operation", what, ke.Provider, ke.Op)
	}
}

// allowedOps are the only OCI operations Keyward may ever call.
var allowedOps = []string{ociemu.OpGenerateDataEncryptionKey, ociemu.OpEncrypt, ociemu.OpDecrypt}

func assertLeastPrivilege(t *testing.T, e *ociemu.Emulator) {
	t.Helper()
	ops := e.Server.Faults.Ops()
	if len(ops) == 0 {
		t.Fatal("the request log is empty")
	}
	for op := range ops {
		if !slices.Contains(allowedOps, op) {
			t.Errorf("request log holds %q; only %v are allowed (ops: %v)", op, allowedOps, ops)
		}
	}
}

func TestConformance(t *testing.T) {
	e, p := setup(t, nil)
	disabled, missing := e.CreateKey(), e.UnknownKey()
	e.DisableKey(disabled)
	cfg := kmstest.ConformanceConfig{
		KeyA: e.CreateKey(), KeyB: e.CreateKey(),
		DisabledKey: disabled, MissingKey: missing,
	}
	t.Run("Provider", func(t *testing.T) {
		cfg := cfg
		cfg.Provider = p
		kmstest.RunConformance(t, cfg)
	})
	t.Run("Client", func(t *testing.T) {
		cfg := cfg
		cfg.Provider = kms.NewClient(kms.WithProvider(kms.SchemeOCI, p))
		kmstest.RunConformance(t, cfg)
	})
	t.Run("LeastPrivilege", func(t *testing.T) { assertLeastPrivilege(t, e) })
	if f := e.AuthFailures(); len(f) > 0 {
		t.Errorf("the emulator refused %d signatures: %v", len(f), f)
	}
}

func TestConformanceTLS(t *testing.T) {
	e, p := setup(t, []ociemu.Option{ociemu.WithTLS()})
	if !strings.HasPrefix(e.URL, "https://") {
		t.Fatalf("URL = %s, want https", e.URL)
	}
	kmstest.RunConformance(t, kmstest.ConformanceConfig{Provider: p, KeyA: e.CreateKey(), KeyB: e.CreateKey()})
}

// TestAssociatedDataSent: the context reaches OCI as associatedData (and
// loggingContext, for the tenant's audit log), and OCI, not the provider,
// enforces it: the raw SDK cannot decrypt without it.
func TestAssociatedDataSent(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	e := ociemu.StartT(t)
	hc := e.Server.Client()
	hc.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		return e.Server.Client().Transport.RoundTrip(r)
	})
	p, err := e.Provider(ocikms.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	key := e.CreateKey()
	ctx := t.Context()
	dk, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatalf("GenerateDataKey err = %v", err)
	}
	defer dk.Destroy()
	var sent struct {
		AssociatedData map[string]string `json:"associatedData"`
		LoggingContext map[string]string `json:"loggingContext"`
	}
	mu.Lock()
	if len(bodies) != 1 {
		t.Fatalf("%d requests, want 1", len(bodies))
	}
	err = json.Unmarshal(bodies[0], &sent)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(sent.AssociatedData, ec) || !maps.Equal(sent.LoggingContext, ec) {
		t.Fatalf("sent associatedData %v, loggingContext %v; want %v for both", sent.AssociatedData, sent.LoggingContext, ec)
	}

	// Decrypting through the SDK without associated data fails at OCI.
	kc := sdkClient(t, e)
	_, err = kc.Decrypt(ctx, keymanagement.DecryptRequest{DecryptDataDetails: keymanagement.DecryptDataDetails{
		KeyId: common.String(key.KeyID), Ciphertext: common.String(string(dk.Ciphertext)),
	}})
	if se, ok := common.IsServiceError(err); !ok || se.GetHTTPStatusCode() != 400 || se.GetCode() != "InvalidParameter" {
		t.Fatalf("SDK Decrypt without associated data err = %v, want 400 InvalidParameter", err)
	}
	// And through the provider with another tenant's context.
	_, err = p.Decrypt(ctx, key, dk.Ciphertext, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed))
	wantCode(t, "Decrypt with another tenant's context", err, kms.CodeInvalidCiphertext)
	pt, err := p.Decrypt(ctx, key, dk.Ciphertext, ec)
	if err != nil || !pt.Equal(dk.Plaintext) {
		t.Fatalf("Decrypt with the right context err = %v", err)
	}
	pt.Destroy()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// sdkClient is a plain SDK crypto client for the emulator, as any OCI user
// would build one.
func sdkClient(t *testing.T, e *ociemu.Emulator) keymanagement.KmsCryptoClient {
	t.Helper()
	cp := common.NewRawConfigurationProvider(e.TenancyOCID, e.UserOCID, e.Region, e.Fingerprint, string(e.PrivateKeyPEM), nil)
	kc, err := keymanagement.NewKmsCryptoClientWithConfigurationProvider(cp, e.URL)
	if err != nil {
		t.Fatal(err)
	}
	kc.HTTPClient = e.Server.Client()
	kc.Configuration.CircuitBreaker = nil
	return kc
}

func TestKeyRotation(t *testing.T) {
	e, p := setup(t, nil)
	key := e.CreateKey()
	ctx := t.Context()
	v1 := e.CurrentVersion(key)
	old, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Destroy()
	if old.KeyVersion != v1 {
		t.Fatalf("KeyVersion = %s, want the current version %s", old.KeyVersion, v1)
	}
	v2 := e.RotateKey(key)
	if v2 == v1 {
		t.Fatal("RotateKey returned the old version")
	}
	fresh, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Destroy()
	if fresh.KeyVersion != v2 {
		t.Fatalf("KeyVersion after rotation = %s, want %s", fresh.KeyVersion, v2)
	}
	pt := kms.NewSecret(bytes.Repeat([]byte{7}, 32))
	w, err := p.Encrypt(ctx, key, pt, ec)
	if err != nil || w.KeyVersion != v2 {
		t.Fatalf("Encrypt after rotation = %v, %v; want version %s", w, err, v2)
	}
	for name, c := range map[string][]byte{"old": old.Ciphertext, "new": fresh.Ciphertext} {
		got, err := p.Decrypt(ctx, key, c, ec)
		if err != nil {
			t.Fatalf("Decrypt(%s ciphertext) err = %v", name, err)
		}
		want := old.Plaintext
		if name == "new" {
			want = fresh.Plaintext
		}
		if !got.Equal(want) {
			t.Fatalf("Decrypt(%s ciphertext) returned other bytes", name)
		}
		got.Destroy()
	}
}

// TestSignatures: the emulator accepts only requests signed by the test
// user's key, over the body actually sent, dated now.
func TestSignatures(t *testing.T) {
	ctx := t.Context()

	t.Run("another key pair", func(t *testing.T) {
		e := ociemu.StartT(t)
		key := e.CreateKey()
		otherPEM, otherFP := newKeyPair(t)
		for _, c := range []struct{ name, fp string }{{"its own fingerprint", otherFP}, {"the user's fingerprint", e.Fingerprint}} {
			name, fp := c.name, c.fp
			p, err := ocikms.New(ocikms.WithAPIKey(e.TenancyOCID, e.UserOCID, fp, otherPEM, ""), ocikms.WithHTTPClient(e.Server.Client()))
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.GenerateDataKey(ctx, key, ec)
			wantCode(t, "GenerateDataKey signed with another key and "+name, err, kms.CodeAccessDenied)
			var se common.ServiceError
			if !errors.As(err, &se) || se.GetHTTPStatusCode() != 401 || se.GetCode() != "NotAuthenticated" {
				t.Fatalf("SDK error = %v, want 401 NotAuthenticated", err)
			}
		}
		wantAuthFailures(t, e, ociemu.ErrUnknownKeyID, ociemu.ErrBadSignature)
	})

	t.Run("tampered body", func(t *testing.T) {
		e := ociemu.StartT(t)
		key := e.CreateKey()
		hc := e.Server.Client()
		inner := hc.Transport
		hc.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			// Change the body after signing, keeping its length.
			b, _ := io.ReadAll(r.Body)
			b = bytes.Replace(b, []byte(`"keyward:tenant":"acme"`), []byte(`"keyward:tenant":"evil"`), 1)
			r.Body = io.NopCloser(bytes.NewReader(b))
			return inner.RoundTrip(r)
		})
		p, err := e.Provider(ocikms.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.GenerateDataKey(ctx, key, ec)
		wantCode(t, "GenerateDataKey with a tampered body", err, kms.CodeAccessDenied)
		wantAuthFailures(t, e, ociemu.ErrBodyHash)
	})

	t.Run("stale date", func(t *testing.T) {
		e, p := setup(t, []ociemu.Option{ociemu.WithClock(func() time.Time { return time.Now().Add(ociemu.MaxClockSkew + time.Minute) })})
		_, err := p.GenerateDataKey(ctx, e.CreateKey(), ec)
		wantCode(t, "GenerateDataKey with a clock 6 minutes off", err, kms.CodeAccessDenied)
		wantAuthFailures(t, e, ociemu.ErrStaleDate)
	})

	t.Run("stale date, correctly signed", func(t *testing.T) {
		e := ociemu.StartT(t)
		key := e.CreateKey()
		req := signedRequest(t, e, ociemu.PathEncrypt, `{"keyId":"`+key.KeyID+`","plaintext":"AAAA"}`, time.Now().Add(-10*time.Minute))
		resp := do(t, e, req)
		wantAPIError(t, resp, 401, "NotAuthenticated")
		wantAuthFailures(t, e, ociemu.ErrStaleDate)
		// The same request dated now passes.
		req = signedRequest(t, e, ociemu.PathEncrypt, `{"keyId":"`+key.KeyID+`","plaintext":"AAAA"}`, time.Now())
		if resp := do(t, e, req); resp.StatusCode != 200 {
			t.Fatalf("freshly signed request: HTTP %d, want 200", resp.StatusCode)
		}
	})

	t.Run("unsigned", func(t *testing.T) {
		e := ociemu.StartT(t)
		req, _ := http.NewRequest(http.MethodPost, e.URL+ociemu.PathEncrypt, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		wantAPIError(t, do(t, e, req), 401, "NotAuthenticated")
		wantAuthFailures(t, e, ociemu.ErrUnsigned)
	})
}

func wantAuthFailures(t *testing.T, e *ociemu.Emulator, want ...error) {
	t.Helper()
	got := e.AuthFailures()
	if len(got) != len(want) {
		t.Fatalf("auth failures = %v, want %v", got, want)
	}
	for i := range want {
		if !errors.Is(got[i], want[i]) {
			t.Fatalf("auth failure %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func newKeyPair(t *testing.T) (pemBytes []byte, fingerprint string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := ociemu.Fingerprint(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), fp
}

// signedRequest signs a request with the OCI SDK's own signer, dated date.
func signedRequest(t *testing.T, e *ociemu.Emulator, path, body string, date time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Date", date.UTC().Format(http.TimeFormat))
	cp := common.NewRawConfigurationProvider(e.TenancyOCID, e.UserOCID, e.Region, e.Fingerprint, string(e.PrivateKeyPEM), nil)
	if err := common.DefaultRequestSigner(cp).Sign(req); err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, e *ociemu.Emulator, req *http.Request) *http.Response {
	t.Helper()
	resp, err := e.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func wantAPIError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	var body struct{ Code, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if resp.StatusCode != status || body.Code != code || body.Message == "" || resp.Header.Get("opc-request-id") == "" {
		t.Fatalf("answer = HTTP %d %+v (opc-request-id %q), want %d %s with a message and a request id",
			resp.StatusCode, body, resp.Header.Get("opc-request-id"), status, code)
	}
}

// TestFailureClasses drives every failure through the emulator and the
// real SDK and checks its kms code, breaker and retry classification.
func TestFailureClasses(t *testing.T) {
	type tc struct {
		name      string
		setup     func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte)
		op        string // kms.Op*
		want      kms.Code
		endpoint  bool // IsEndpointFailure
		retryable bool
		requests  int // requests the emulator logged (-1: don't check)
	}
	fault := func(f kmstest.Fault) func(*testing.T, *ociemu.Emulator, kms.KeyURI) (kms.KeyURI, []byte) {
		return func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			e.Server.Faults.Set(f)
			t.Cleanup(func() { e.Server.Faults.Set(kmstest.FaultNone) })
			return key, nil
		}
	}
	cases := []tc{
		{"server error, one quick retry", fault(kmstest.FaultServerError), kms.OpGenerateDataKey, kms.CodeEndpointUnreachable, true, true, 2},
		{"throttled, not retried", fault(kmstest.FaultThrottle), kms.OpEncrypt, kms.CodeThrottled, false, true, 1},
		{"refused", fault(kmstest.FaultRefuse), kms.OpDecrypt, kms.CodeEndpointUnreachable, true, true, 0},
		{"disabled key", func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			e.DisableKey(key)
			return key, nil
		}, kms.OpDecrypt, kms.CodeKeyDisabled, false, false, 1},
		{"key pending deletion", func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			e.ScheduleDeletion(key)
			return key, nil
		}, kms.OpGenerateDataKey, kms.CodeKeyDisabled, false, false, 1},
		{"policy lacks Decrypt", func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			e.Server.Faults.Deny(ociemu.OpDecrypt)
			return key, nil
		}, kms.OpDecrypt, kms.CodeKeyNotFound, false, false, 1},
		{"policy lacks Decrypt, Encrypt still works", func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			e.Server.Faults.Deny(ociemu.OpDecrypt)
			return key, nil
		}, kms.OpEncrypt, "", false, false, 1},
		{"unknown key", func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			return e.UnknownKey(), nil
		}, kms.OpEncrypt, kms.CodeKeyNotFound, false, false, 1},
		{"tampered ciphertext", func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			return key, nil // Decrypt below flips a byte
		}, "tamper", kms.CodeInvalidCiphertext, false, false, 1},
		{"another key's ciphertext", func(t *testing.T, e *ociemu.Emulator, key kms.KeyURI) (kms.KeyURI, []byte) {
			return e.CreateKey(), nil
		}, kms.OpDecrypt, kms.CodeInvalidCiphertext, false, false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, p := setup(t, nil)
			key := e.CreateKey()
			ctx := t.Context()
			dk, err := p.GenerateDataKey(ctx, key, ec)
			if err != nil {
				t.Fatal(err)
			}
			defer dk.Destroy()
			target, _ := c.setup(t, e, key)
			e.Server.Faults.ResetLog()
			op, ct := c.op, dk.Ciphertext
			if op == "tamper" {
				op, ct = kms.OpDecrypt, bytes.Clone(ct)
				ct[len(ct)/2] ^= 0x01
			}
			err = call(ctx, p, op, target, ct)
			if c.want == "" {
				if err != nil {
					t.Fatalf("%s err = %v, want success", op, err)
				}
			} else {
				wantCode(t, op, err, c.want)
				if got := kms.IsEndpointFailure(err); got != c.endpoint {
					t.Errorf("IsEndpointFailure = %v, want %v", got, c.endpoint)
				}
				if got := kms.IsRetryable(err); got != c.retryable {
					t.Errorf("IsRetryable = %v, want %v", got, c.retryable)
				}
			}
			if n := len(e.Server.Faults.Requests()); c.requests >= 0 && n != c.requests {
				t.Errorf("emulator logged %d requests, want %d", n, c.requests)
			}
			e.Server.Faults.Set(kmstest.FaultNone)
			assertLeastPrivilegeIfAny(t, e)
		})
	}
}

func assertLeastPrivilegeIfAny(t *testing.T, e *ociemu.Emulator) {
	t.Helper()
	for op := range e.Server.Faults.Ops() {
		if !slices.Contains(allowedOps, op) {
			t.Errorf("request log holds %q", op)
		}
	}
}

// call runs op against key; ct is the ciphertext for Decrypt.
func call(ctx context.Context, p kms.Provider, op string, key kms.KeyURI, ct []byte) error {
	switch op {
	case kms.OpGenerateDataKey:
		dk, err := p.GenerateDataKey(ctx, key, ec)
		dk.Destroy()
		return err
	case kms.OpEncrypt:
		pt := kms.NewSecret(bytes.Repeat([]byte{1}, 32))
		defer pt.Destroy()
		_, err := p.Encrypt(ctx, key, pt, ec)
		return err
	default:
		s, err := p.Decrypt(ctx, key, ct, ec)
		s.Destroy()
		return err
	}
}

func TestMaxAttempts(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		e, p := setup(t, nil, ocikms.WithMaxAttempts(n))
		key := e.CreateKey()
		e.Server.Faults.Set(kmstest.FaultServerError)
		err := call(t.Context(), p, kms.OpEncrypt, key, nil)
		wantCode(t, "Encrypt", err, kms.CodeEndpointUnreachable)
		if got := len(e.Server.Faults.Requests()); got != n {
			t.Errorf("WithMaxAttempts(%d): %d requests, want %d", n, got, n)
		}
	}
	// A retry that would not fit before the deadline is not made.
	e, p := setup(t, nil, ocikms.WithMaxAttempts(3))
	key := e.CreateKey()
	e.Server.Faults.Set(kmstest.FaultServerError)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	err := call(ctx, p, kms.OpEncrypt, key, nil)
	wantCode(t, "Encrypt with a short deadline", err, kms.CodeEndpointUnreachable)
	if got := len(e.Server.Faults.Requests()); got != 1 {
		t.Errorf("%d requests with 150ms left, want 1 (no retry)", got)
	}
}

// TestHang: an endpoint that never answers fails with endpoint_unreachable
// at the Client's call timeout, and with the caller's own deadline error
// when the caller's context ends first.
func TestHang(t *testing.T) {
	e, p := setup(t, nil)
	key := e.CreateKey()
	e.Server.Faults.Set(kmstest.FaultHang)
	t.Cleanup(func() { e.Server.Faults.Set(kmstest.FaultNone) })

	client := kms.NewClient(kms.WithProvider(kms.SchemeOCI, p), kms.WithCallTimeout(100*time.Millisecond))
	start := time.Now()
	_, err := client.GenerateDataKey(t.Context(), key, ec)
	if d := time.Since(start); d > time.Second {
		t.Errorf("GenerateDataKey took %v with a 100ms call timeout", d)
	}
	wantCode(t, "GenerateDataKey against a hanging endpoint", err, kms.CodeEndpointUnreachable)
	if !kms.IsEndpointFailure(err) || kms.IsCanceled(err) {
		t.Errorf("IsEndpointFailure, IsCanceled = %v, %v; want true, false", kms.IsEndpointFailure(err), kms.IsCanceled(err))
	}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err = call(ctx, p, kms.OpEncrypt, key, nil)
	if !errors.Is(err, context.DeadlineExceeded) || kms.CodeOf(err) != kms.CodeInternal || kms.IsEndpointFailure(err) {
		t.Fatalf("Encrypt with the caller's deadline passing err = %v, want internal matching context.DeadlineExceeded", err)
	}
}

// TestDNSFailure: an endpoint whose name does not resolve is unreachable,
// and is not retried. The resolver is simulated: no packet leaves loopback.
func TestDNSFailure(t *testing.T) {
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		host, _, _ := net.SplitHostPort(addr)
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	}}
	e := ociemu.StartT(t)
	p, err := e.Provider(ocikms.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	key := e.CreateKey()
	key.Endpoint = "https://vaultx-crypto.kms.keyward-test.invalid"
	err = call(t.Context(), p, kms.OpGenerateDataKey, key, nil)
	wantCode(t, "GenerateDataKey at an unknown host", err, kms.CodeEndpointUnreachable)
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("err = %v, want a *net.DNSError reachable with errors.As", err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1 (an unknown host is not retried)", n)
	}
}

// TestRegionAllowlist: a key outside the allowed regions fails before any
// request is sent.
func TestRegionAllowlist(t *testing.T) {
	e, p := setup(t, []ociemu.Option{ociemu.WithRegion("ap-tokyo-1")})
	key := e.CreateKey()
	for _, op := range []string{kms.OpGenerateDataKey, kms.OpEncrypt, kms.OpDecrypt} {
		err := call(t.Context(), p, op, key, []byte("AAAA"))
		wantCode(t, op+" in ap-tokyo-1", err, kms.CodeInvalidArgument)
	}
	if n := len(e.Server.Faults.Requests()); n != 0 {
		t.Fatalf("the emulator logged %d requests, want none", n)
	}
	if err := ocikms.CheckRegion(key, nil); kms.CodeOf(err) != kms.CodeInvalidArgument {
		t.Fatalf("CheckRegion(ap-tokyo-1, default) = %v, want invalid_argument", err)
	}

	// Allowed once configured.
	p2, err := e.Provider(ocikms.WithAllowedRegions([]string{"ap-tokyo-1"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := call(t.Context(), p2, kms.OpEncrypt, key, nil); err != nil {
		t.Fatalf("Encrypt with ap-tokyo-1 allowed err = %v", err)
	}
	if err := ocikms.CheckRegion(key, []string{"ap-tokyo-1"}); err != nil {
		t.Fatalf("CheckRegion(ap-tokyo-1, [ap-tokyo-1]) = %v", err)
	}
	// The default list is what the platform serves from.
	if got := ocikms.DefaultAllowedRegions(); !slices.Equal(got, []string{"us-ashburn-1", "us-phoenix-1", "us-sanjose-1", "eu-amsterdam-1"}) {
		t.Fatalf("DefaultAllowedRegions() = %v", got)
	}
	if got := p.AllowedRegions(); !slices.Equal(got, ocikms.DefaultAllowedRegions()) {
		t.Fatalf("AllowedRegions() = %v, want the default", got)
	}
	real := kms.MustParseKeyURI("ocikms://ocid1.key.oc1.iad.bbpr4ltnaaeuk.abuwcljrs6fmbuuxq4zsxd6rwb3ug4zhqmw6tkfgaq2bbtslhbwzbn3kgqza?endpoint=https://bbpr4ltnaaeuk-crypto.kms.us-ashburn-1.oraclecloud.com")
	if err := ocikms.CheckRegion(real, nil); err != nil {
		t.Fatalf("CheckRegion(us-ashburn-1 endpoint) = %v", err)
	}
}

// TestInvalidKeys: bad key URIs fail with invalid_argument and send nothing.
func TestInvalidKeys(t *testing.T) {
	e, p := setup(t, nil)
	good := e.CreateKey()
	noEndpoint := good
	noEndpoint.Endpoint = ""
	badOCID := good
	badOCID.KeyID = "ocid1.vault.oc1.iad.abc.def"
	for name, key := range map[string]kms.KeyURI{
		"awskms URI":  kms.MustParseKeyURI("awskms://alias/x?region=eu-west-2"),
		"zero URI":    {},
		"no endpoint": noEndpoint,
		"vault OCID":  badOCID,
	} {
		err := call(t.Context(), p, kms.OpEncrypt, key, nil)
		wantCode(t, "Encrypt with "+name, err, kms.CodeInvalidArgument)
	}
	// Within Keyward's bounds (3031 bytes encoded), beyond OCI's (quotes
	// double in JSON: over 6000 characters).
	big := kms.EncryptionContext{"a": strings.Repeat(`"`, 1000), "b": strings.Repeat(`"`, 1000), "c": strings.Repeat(`"`, 1000)}
	if err := big.Validate(); err != nil {
		t.Fatal(err)
	}
	pt := kms.NewSecret([]byte("0123456789abcdef0123456789abcdef"))
	_, err := p.Encrypt(t.Context(), good, pt, big)
	wantCode(t, "Encrypt with a context over OCI's limit", err, kms.CodeInvalidArgument)
	if n := len(e.Server.Faults.Requests()); n != 0 {
		t.Fatalf("the emulator logged %d requests, want none", n)
	}
}

// TestTwoEndpoints: one provider serves keys of several vaults
// concurrently, one crypto client per endpoint.
func TestTwoEndpoints(t *testing.T) {
	e1 := ociemu.StartT(t)
	e2 := ociemu.StartT(t, ociemu.WithRegion("eu-amsterdam-1"))
	// Both emulators trust the same user: e2 verifies against e1's key.
	p, err := ocikms.New(ocikms.WithAPIKey(e1.TenancyOCID, e1.UserOCID, e1.Fingerprint, e1.PrivateKeyPEM, ""), ocikms.WithHTTPClient(e1.Server.Client()))
	if err != nil {
		t.Fatal(err)
	}
	k1 := e1.CreateKey()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 10 {
		wg.Go(func() {
			dk, err := p.GenerateDataKey(t.Context(), k1, ec)
			if err == nil {
				dk.Destroy()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// e2 has another user: its signature check refuses e1's key, which
	// shows the request went to e2's endpoint through its own client.
	err = call(t.Context(), p, kms.OpEncrypt, e2.CreateKey(), nil)
	wantCode(t, "Encrypt at the second vault", err, kms.CodeAccessDenied)
	wantAuthFailures(t, e2, ociemu.ErrUnknownKeyID)
}

func TestNewErrors(t *testing.T) {
	e := ociemu.StartT(t)
	_, otherFP := newKeyPair(t)
	key := func() ocikms.Option {
		return ocikms.WithAPIKey(e.TenancyOCID, e.UserOCID, e.Fingerprint, e.PrivateKeyPEM, "")
	}
	for name, opts := range map[string][]ocikms.Option{
		"no auth":          nil,
		"two auths":        {key(), ocikms.WithInstancePrincipal()},
		"bad PEM":          {ocikms.WithAPIKey(e.TenancyOCID, e.UserOCID, otherFP, []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), "")},
		"empty PEM":        {ocikms.WithAPIKey(e.TenancyOCID, e.UserOCID, otherFP, nil, "")},
		"bad fingerprint":  {ocikms.WithAPIKey(e.TenancyOCID, e.UserOCID, "AA-BB", e.PrivateKeyPEM, "")},
		"bad tenancy":      {ocikms.WithAPIKey("tenancy", e.UserOCID, e.Fingerprint, e.PrivateKeyPEM, "")},
		"bad user":         {ocikms.WithAPIKey(e.TenancyOCID, "ocid1.group.oc1..aaaa", e.Fingerprint, e.PrivateKeyPEM, "")},
		"nil provider":     {ocikms.WithConfigurationProvider(nil)},
		"nil HTTP client":  {key(), ocikms.WithHTTPClient(nil)},
		"zero attempts":    {key(), ocikms.WithMaxAttempts(0)},
		"many attempts":    {key(), ocikms.WithMaxAttempts(6)},
		"no regions":       {key(), ocikms.WithAllowedRegions(nil)},
		"bad region":       {key(), ocikms.WithAllowedRegions([]string{"US-ASHBURN-1"})},
		"duplicate region": {key(), ocikms.WithAllowedRegions([]string{"us-ashburn-1", "us-ashburn-1"})},
	} {
		if p, err := ocikms.New(opts...); err == nil || p != nil {
			t.Errorf("New(%s) = %v, %v; want an error", name, p, err)
		}
	}
	if _, err := ocikms.New(ocikms.WithInstancePrincipal()); err != nil {
		t.Errorf("New(WithInstancePrincipal()) err = %v; it must not contact the metadata service", err)
	}
	cp := common.NewRawConfigurationProvider(e.TenancyOCID, e.UserOCID, e.Region, e.Fingerprint, string(e.PrivateKeyPEM), nil)
	p, err := ocikms.New(ocikms.WithConfigurationProvider(cp), ocikms.WithHTTPClient(e.Server.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if err := call(t.Context(), p, kms.OpEncrypt, e.CreateKey(), nil); err != nil {
		t.Fatalf("Encrypt with WithConfigurationProvider err = %v", err)
	}
}

// TestResourcePrincipalUnavailable: without the resource principal
// environment, calls fail with internal (the platform's configuration, not
// the tenant's key nor the endpoint) and nothing is sent.
func TestResourcePrincipalUnavailable(t *testing.T) {
	t.Setenv("OCI_RESOURCE_PRINCIPAL_VERSION", "")
	e := ociemu.StartT(t)
	p, err := ocikms.New(ocikms.WithResourcePrincipal(), ocikms.WithHTTPClient(e.Server.Client()))
	if err != nil {
		t.Fatal(err)
	}
	err = call(t.Context(), p, kms.OpEncrypt, e.CreateKey(), nil)
	wantCode(t, "Encrypt without a resource principal", err, kms.CodeInternal)
	if kms.IsEndpointFailure(err) || kms.IsKeyUnusable(err) {
		t.Errorf("classified as endpoint failure or unusable key: %v", err)
	}
	if n := len(e.Server.Faults.Requests()); n != 0 {
		t.Fatalf("the emulator logged %d requests, want none", n)
	}
}
