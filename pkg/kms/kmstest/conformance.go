package kmstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
)

// ConformanceConfig describes the provider under test and the keys it may use.
type ConformanceConfig struct {
	// Provider is the provider (or kms.Client) under test.
	Provider kms.Provider
	// KeyA and KeyB are two distinct, enabled keys.
	KeyA, KeyB kms.KeyURI
	// DisabledKey is a key that exists but is disabled; the test is skipped
	// when zero.
	DisabledKey kms.KeyURI
	// MissingKey is a well-formed key URI naming no key; the test is skipped
	// when zero.
	MissingKey kms.KeyURI
	// CannotBindContext is set for providers whose KMS cannot bind an
	// encryption context (and that do not bind it themselves); the
	// wrong-context test is then skipped. The provider must document it.
	CannotBindContext bool
	// Timeout bounds each subtest (default 30s).
	Timeout time.Duration
}

// promptly is how fast a call with an already cancelled context must return.
const promptly = 2 * time.Second

// RunConformance runs the tests every kms.Provider must pass: round trips,
// key separation, context binding, malformed ciphertexts, cancellation, key
// versions, data key size and uniqueness, disabled and missing keys, error
// typing and concurrency.
func RunConformance(t *testing.T, cfg ConformanceConfig) {
	t.Helper()
	if cfg.Provider == nil || cfg.KeyA.IsZero() || cfg.KeyB.IsZero() {
		t.Fatal("kmstest: ConformanceConfig needs Provider, KeyA and KeyB")
	}
	if cfg.KeyA == cfg.KeyB {
		t.Fatal("kmstest: KeyA and KeyB must be different keys")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	r := &runner{cfg: cfg, p: cfg.Provider, ec: kms.NewEncryptionContext("conformance-tenant", kms.PurposeAssetSeed)}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context)
	}{
		{"GenerateDataKeyRoundTrip", r.generateRoundTrip},
		{"EncryptRoundTrip", r.encryptRoundTrip},
		{"DataKeysAre32BytesAndDistinct", r.dataKeysDistinct},
		{"KeyVersionStable", r.keyVersionStable},
		{"TwoKeysNotInterchangeable", r.twoKeys},
		{"WrongEncryptionContext", r.wrongContext},
		{"MalformedCiphertext", r.malformed},
		{"CanceledContext", r.canceled},
		{"ExpiredContext", r.expired},
		{"InvalidPlaintext", r.invalidPlaintext},
		{"DisabledKey", r.disabledKey},
		{"MissingKey", r.missingKey},
		{"Concurrent", r.concurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), cfg.Timeout)
			defer cancel()
			tt.fn(t, ctx)
		})
	}
}

type runner struct {
	cfg ConformanceConfig
	p   kms.Provider
	ec  kms.EncryptionContext
}

func randomSecret(n int) *kms.Secret {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return kms.NewSecret(b)
}

// wantCode checks that err is an *kms.Error with code, matching its sentinel
// (and ErrKeyUnusable for key-level codes), and that its message does not
// leak any of secrets.
func wantCode(t *testing.T, what string, err error, code kms.Code, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		t.Errorf("%s err = nil, want %s", what, code)
		return
	}
	var ke *kms.Error
	if !errors.As(err, &ke) {
		t.Errorf("%s err = %v (%T), want a *kms.Error with code %s", what, err, err, code)
		return
	}
	if got := kms.CodeOf(err); got != code {
		t.Errorf("%s code = %s, want %s (err %v)", what, got, code, err)
	}
	if !errors.Is(err, code.Sentinel()) {
		t.Errorf("%s: errors.Is(err, %v) = false (err %v)", what, code.Sentinel(), err)
	}
	keyLevel := code == kms.CodeKeyDisabled || code == kms.CodeAccessDenied || code == kms.CodeKeyNotFound
	if errors.Is(err, kms.ErrKeyUnusable) != keyLevel || kms.IsKeyUnusable(err) != keyLevel {
		t.Errorf("%s: key unusable = %v, want %v (err %v)", what, errors.Is(err, kms.ErrKeyUnusable), keyLevel, err)
	}
	if kms.IsEndpointFailure(err) {
		t.Errorf("%s: IsEndpointFailure = true for %v", what, err)
	}
	noLeak(t, what, err, secrets...)
}

func noLeak(t *testing.T, what string, err error, secrets ...[]byte) {
	t.Helper()
	msg := err.Error()
	for _, s := range secrets {
		if len(s) < 16 {
			continue
		}
		for _, enc := range []string{hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)),
			base64.StdEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s), string(s)} {
			if strings.Contains(msg, enc[:16]) || strings.Contains(msg, enc[len(enc)/2:len(enc)/2+8]) {
				t.Errorf("%s: error %q contains secret or ciphertext bytes", what, msg)
				return
			}
		}
	}
}

func (r *runner) generate(t *testing.T, ctx context.Context, key kms.KeyURI) *kms.DataKey {
	t.Helper()
	dk, err := r.p.GenerateDataKey(ctx, key, r.ec)
	if err != nil {
		t.Fatalf("GenerateDataKey(%s) err = %v", key, err)
	}
	if dk == nil || dk.Plaintext == nil {
		t.Fatalf("GenerateDataKey(%s) = %v, nil error", key, dk)
	}
	t.Cleanup(dk.Destroy)
	return dk
}

func (r *runner) generateRoundTrip(t *testing.T, ctx context.Context) {
	dk := r.generate(t, ctx, r.cfg.KeyA)
	if len(dk.Ciphertext) == 0 {
		t.Fatal("GenerateDataKey returned an empty ciphertext")
	}
	if bytes.Contains(dk.Ciphertext, dk.Plaintext.Bytes()) {
		t.Fatal("GenerateDataKey ciphertext contains the plaintext")
	}
	got, err := r.p.Decrypt(ctx, r.cfg.KeyA, dk.Ciphertext, r.ec)
	if err != nil {
		t.Fatalf("Decrypt(GenerateDataKey ciphertext) err = %v", err)
	}
	defer got.Destroy()
	if !got.Equal(dk.Plaintext) {
		t.Fatalf("Decrypt(GenerateDataKey ciphertext) returned different bytes (%d, want %d)", got.Len(), dk.Plaintext.Len())
	}
}

func (r *runner) encryptRoundTrip(t *testing.T, ctx context.Context) {
	for _, n := range []int{kms.DataKeySize, 1, 64} {
		pt := randomSecret(n)
		defer pt.Destroy()
		w, err := r.p.Encrypt(ctx, r.cfg.KeyA, pt, r.ec)
		if err != nil {
			if n != kms.DataKeySize && kms.CodeOf(err) == kms.CodeInvalidArgument {
				continue // a provider may limit plaintext sizes; 32 bytes must work
			}
			t.Fatalf("Encrypt(%d bytes) err = %v", n, err)
		}
		if len(w.Ciphertext) == 0 || w.KeyVersion == "" {
			t.Fatalf("Encrypt(%d bytes) = %d-byte ciphertext, version %q; want both non-empty", n, len(w.Ciphertext), w.KeyVersion)
		}
		if pt.Len() != n {
			t.Fatalf("Encrypt changed or destroyed the caller's plaintext")
		}
		got, err := r.p.Decrypt(ctx, r.cfg.KeyA, w.Ciphertext, r.ec)
		if err != nil {
			t.Fatalf("Decrypt(Encrypt(%d bytes)) err = %v", n, err)
		}
		if !got.Equal(pt) {
			t.Fatalf("Decrypt(Encrypt(%d bytes)) returned different bytes", n)
		}
		got.Destroy()
	}
}

func (r *runner) dataKeysDistinct(t *testing.T, ctx context.Context) {
	seenPT := map[string]bool{}
	seenCT := map[string]bool{}
	for i := range 4 {
		dk := r.generate(t, ctx, r.cfg.KeyA)
		if dk.Plaintext.Len() != kms.DataKeySize {
			t.Fatalf("data key %d is %d bytes, want %d", i, dk.Plaintext.Len(), kms.DataKeySize)
		}
		if seenPT[string(dk.Plaintext.Bytes())] || seenCT[string(dk.Ciphertext)] {
			t.Fatalf("data key %d repeats an earlier data key or ciphertext", i)
		}
		seenPT[string(dk.Plaintext.Bytes())] = true
		seenCT[string(dk.Ciphertext)] = true
	}
	// Wrapping the same plaintext twice must not give the same ciphertext
	// (randomised wrapping).
	pt := randomSecret(kms.DataKeySize)
	defer pt.Destroy()
	w1, err1 := r.p.Encrypt(ctx, r.cfg.KeyA, pt, r.ec)
	w2, err2 := r.p.Encrypt(ctx, r.cfg.KeyA, pt, r.ec)
	if err1 != nil || err2 != nil {
		t.Fatalf("Encrypt err = %v, %v", err1, err2)
	}
	if bytes.Equal(w1.Ciphertext, w2.Ciphertext) {
		t.Error("Encrypt of the same plaintext twice gave equal ciphertexts")
	}
}

func (r *runner) keyVersionStable(t *testing.T, ctx context.Context) {
	var versions []string
	for range 3 {
		dk := r.generate(t, ctx, r.cfg.KeyA)
		versions = append(versions, dk.KeyVersion)
		pt := randomSecret(kms.DataKeySize)
		w, err := r.p.Encrypt(ctx, r.cfg.KeyA, pt, r.ec)
		pt.Destroy()
		if err != nil {
			t.Fatalf("Encrypt err = %v", err)
		}
		versions = append(versions, w.KeyVersion)
	}
	for i, v := range versions {
		if v == "" {
			t.Fatalf("call %d returned an empty key version", i)
		}
		if v != versions[0] {
			t.Fatalf("key versions differ across calls: %q", versions)
		}
	}
}

func (r *runner) twoKeys(t *testing.T, ctx context.Context) {
	a := r.generate(t, ctx, r.cfg.KeyA)
	b := r.generate(t, ctx, r.cfg.KeyB)
	got, err := r.p.Decrypt(ctx, r.cfg.KeyB, a.Ciphertext, r.ec)
	if err == nil {
		got.Destroy()
		t.Fatal("Decrypt under KeyB of a KeyA ciphertext succeeded")
	}
	wantCode(t, "Decrypt(KeyB, KeyA ciphertext)", err, kms.CodeInvalidCiphertext, a.Plaintext.Bytes(), a.Ciphertext)
	got, err = r.p.Decrypt(ctx, r.cfg.KeyA, b.Ciphertext, r.ec)
	if err == nil {
		got.Destroy()
		t.Fatal("Decrypt under KeyA of a KeyB ciphertext succeeded")
	}
	wantCode(t, "Decrypt(KeyA, KeyB ciphertext)", err, kms.CodeInvalidCiphertext, b.Plaintext.Bytes(), b.Ciphertext)
}

func (r *runner) wrongContext(t *testing.T, ctx context.Context) {
	if r.cfg.CannotBindContext {
		t.Skip("provider documents that it cannot bind an encryption context")
	}
	dk := r.generate(t, ctx, r.cfg.KeyA)
	others := map[string]kms.EncryptionContext{
		"other tenant":  kms.NewEncryptionContext("other-tenant", kms.PurposeAssetSeed),
		"other purpose": kms.NewEncryptionContext("conformance-tenant", kms.PurposeProbe),
		"extra pair":    {kms.ContextKeyTenant: "conformance-tenant", kms.ContextKeyPurpose: kms.PurposeAssetSeed, "x": "y"},
		"missing pair":  {kms.ContextKeyTenant: "conformance-tenant"},
		"empty":         nil,
	}
	for name, ec := range others {
		got, err := r.p.Decrypt(ctx, r.cfg.KeyA, dk.Ciphertext, ec)
		if err == nil {
			got.Destroy()
			t.Errorf("Decrypt with %s context succeeded", name)
			continue
		}
		wantCode(t, "Decrypt with "+name+" context", err, kms.CodeInvalidCiphertext, dk.Plaintext.Bytes(), dk.Ciphertext)
	}
	if got, err := r.p.Decrypt(ctx, r.cfg.KeyA, dk.Ciphertext, r.ec); err != nil {
		t.Errorf("Decrypt with the right context after wrong ones err = %v", err)
	} else {
		got.Destroy()
	}
}

func (r *runner) malformed(t *testing.T, ctx context.Context) {
	dk := r.generate(t, ctx, r.cfg.KeyA)
	ct := dk.Ciphertext
	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}
	garbage := make([]byte, len(ct))
	_, _ = rand.Read(garbage)
	cases := map[string][]byte{
		"truncated by one":   ct[:len(ct)-1],
		"truncated to half":  ct[:len(ct)/2],
		"first byte only":    ct[:1],
		"last byte flipped":  flip(len(ct) - 1),
		"middle flipped":     flip(len(ct) / 2),
		"first byte flipped": flip(0),
		"byte appended":      append(bytes.Clone(ct), 0),
		"random":             garbage,
		"zeros, 4 KiB":       make([]byte, 4096),
	}
	for name, c := range cases {
		got, err := r.p.Decrypt(ctx, r.cfg.KeyA, c, r.ec)
		if err == nil {
			got.Destroy()
			t.Errorf("Decrypt of %s ciphertext succeeded", name)
			continue
		}
		wantCode(t, "Decrypt of "+name+" ciphertext", err, kms.CodeInvalidCiphertext, dk.Plaintext.Bytes())
	}
}

// within runs fn and fails the test if it takes longer than promptly.
func within(t *testing.T, what string, fn func() error) error {
	t.Helper()
	start := time.Now()
	err := fn()
	if d := time.Since(start); d > promptly {
		t.Errorf("%s took %v with a done context, want < %v", what, d, promptly)
	}
	return err
}

func (r *runner) contextDone(t *testing.T, ctx context.Context, want error) {
	dk := r.generate(t, context.Background(), r.cfg.KeyA)
	pt := randomSecret(kms.DataKeySize)
	defer pt.Destroy()
	calls := map[string]func() error{
		"GenerateDataKey": func() error {
			d, err := r.p.GenerateDataKey(ctx, r.cfg.KeyA, r.ec)
			if err == nil {
				d.Destroy()
			}
			return err
		},
		"Encrypt": func() error { _, err := r.p.Encrypt(ctx, r.cfg.KeyA, pt, r.ec); return err },
		"Decrypt": func() error {
			s, err := r.p.Decrypt(ctx, r.cfg.KeyA, dk.Ciphertext, r.ec)
			s.Destroy()
			return err
		},
	}
	for name, call := range calls {
		err := within(t, name, call)
		if !errors.Is(err, want) {
			t.Errorf("%s with a done context err = %v, want one matching %v", name, err, want)
			continue
		}
		if kms.IsEndpointFailure(err) || kms.IsKeyUnusable(err) {
			t.Errorf("%s with a done context: classified as endpoint failure or unusable key: %v", name, err)
		}
		noLeak(t, name, err, dk.Plaintext.Bytes(), pt.Bytes())
	}
}

func (r *runner) canceled(t *testing.T, ctx context.Context) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	r.contextDone(t, cctx, context.Canceled)
}

func (r *runner) expired(t *testing.T, ctx context.Context) {
	dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	r.contextDone(t, dctx, context.DeadlineExceeded)
}

func (r *runner) invalidPlaintext(t *testing.T, ctx context.Context) {
	for name, pt := range map[string]*kms.Secret{"nil": nil, "empty": kms.NewSecret(nil)} {
		w, err := r.p.Encrypt(ctx, r.cfg.KeyA, pt, r.ec)
		if err == nil {
			t.Errorf("Encrypt of %s plaintext = %d-byte ciphertext, want CodeInvalidArgument", name, len(w.Ciphertext))
			continue
		}
		wantCode(t, "Encrypt of "+name+" plaintext", err, kms.CodeInvalidArgument)
	}
}

func (r *runner) disabledKey(t *testing.T, ctx context.Context) {
	if r.cfg.DisabledKey.IsZero() {
		t.Skip("no DisabledKey configured")
	}
	dk, err := r.p.GenerateDataKey(ctx, r.cfg.DisabledKey, r.ec)
	if err == nil {
		dk.Destroy()
		t.Fatal("GenerateDataKey with a disabled key succeeded")
	}
	wantCode(t, "GenerateDataKey(disabled key)", err, kms.CodeKeyDisabled)
	if kms.IsRetryable(err) {
		t.Errorf("disabled key error is retryable: %v", err)
	}
	pt := randomSecret(kms.DataKeySize)
	defer pt.Destroy()
	_, err = r.p.Encrypt(ctx, r.cfg.DisabledKey, pt, r.ec)
	wantCode(t, "Encrypt(disabled key)", err, kms.CodeKeyDisabled, pt.Bytes())
}

func (r *runner) missingKey(t *testing.T, ctx context.Context) {
	if r.cfg.MissingKey.IsZero() {
		t.Skip("no MissingKey configured")
	}
	dk, err := r.p.GenerateDataKey(ctx, r.cfg.MissingKey, r.ec)
	if err == nil {
		dk.Destroy()
		t.Fatal("GenerateDataKey with a missing key succeeded")
	}
	wantCode(t, "GenerateDataKey(missing key)", err, kms.CodeKeyNotFound)
	pt := randomSecret(kms.DataKeySize)
	defer pt.Destroy()
	_, err = r.p.Encrypt(ctx, r.cfg.MissingKey, pt, r.ec)
	wantCode(t, "Encrypt(missing key)", err, kms.CodeKeyNotFound, pt.Bytes())
	a := r.generate(t, ctx, r.cfg.KeyA)
	s, err := r.p.Decrypt(ctx, r.cfg.MissingKey, a.Ciphertext, r.ec)
	if err == nil {
		s.Destroy()
		t.Fatal("Decrypt with a missing key succeeded")
	}
	wantCode(t, "Decrypt(missing key)", err, kms.CodeKeyNotFound, a.Plaintext.Bytes())
}

func (r *runner) concurrent(t *testing.T, ctx context.Context) {
	const workers, rounds = 8, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		key := r.cfg.KeyA
		if w%2 == 1 {
			key = r.cfg.KeyB
		}
		wg.Go(func() {
			for range rounds {
				dk, err := r.p.GenerateDataKey(ctx, key, r.ec)
				if err != nil {
					errs <- err
					return
				}
				got, err := r.p.Decrypt(ctx, key, dk.Ciphertext, r.ec)
				if err != nil {
					dk.Destroy()
					errs <- err
					return
				}
				if !got.Equal(dk.Plaintext) {
					errs <- errors.New("concurrent round trip returned different bytes")
				}
				got.Destroy()
				dk.Destroy()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent round trip: %v", err)
	}
}
