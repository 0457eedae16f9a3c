package azurekv_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
)

// Ciphertext surgery, following the documented layout:
// "KWAZ" || u8 version || u8 algorithm || u16 len(kid) || kid || wrapped.
func kidOf(ct []byte) string {
	n := int(binary.BigEndian.Uint16(ct[6:8]))
	return string(ct[8 : 8+n])
}

func withKID(ct []byte, kid string) []byte {
	n := int(binary.BigEndian.Uint16(ct[6:8]))
	out := append([]byte(nil), ct[:6]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(kid)))
	out = append(out, kid...)
	return append(out, ct[8+n:]...)
}

// flipHexDigit changes the last hex digit of the kid's version to another
// hex digit: still a well-formed version, of no version of this key.
func flipHexDigit(ct []byte) []byte {
	kid := kidOf(ct)
	last := kid[len(kid)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return withKID(ct, kid[:len(kid)-1]+string(repl))
}

// setup is one failure scenario's world: an emulator, a warmed-up
// provider, a key and a ciphertext made before the failure.
type setup struct {
	e   *azureemu.Emulator
	p   *azurekv.Provider
	key kms.KeyURI
	dk  *kms.DataKey
}

func newSetup(t *testing.T, hsm bool, opts ...azurekv.Option) *setup {
	t.Helper()
	e, p := newProvider(t, opts...)
	var key kms.KeyURI
	if hsm {
		key = e.CreateOctKey("acme-hsm", "tenant-key")
	} else {
		key = e.CreateRSAKey("acme-kv", "tenant-key")
	}
	s := &setup{e: e, p: p, key: key, dk: roundTrip(t, p, key)}
	e.Server.Faults.ResetLog()
	return s
}

func (s *setup) generate(ctx context.Context) error {
	dk, err := s.p.GenerateDataKey(ctx, s.key, ec)
	dk.Destroy()
	return err
}

func (s *setup) decrypt(ctx context.Context, ct []byte) error {
	pt, err := s.p.Decrypt(ctx, s.key, ct, ec)
	pt.Destroy()
	return err
}

// checkClass checks err's code and the predicates the pipeline acts on.
func checkClass(t *testing.T, what string, err error, code kms.Code) {
	t.Helper()
	wantCode(t, what, err, code)
	if got, want := kms.IsEndpointFailure(err), code == kms.CodeEndpointUnreachable; got != want {
		t.Errorf("%s: IsEndpointFailure = %v, want %v (%v)", what, got, want, err)
	}
	if got, want := kms.IsRetryable(err), code == kms.CodeEndpointUnreachable || code == kms.CodeThrottled; got != want {
		t.Errorf("%s: IsRetryable = %v, want %v (%v)", what, got, want, err)
	}
	if got, want := kms.IsKeyUnusable(err), code == kms.CodeKeyDisabled || code == kms.CodeAccessDenied || code == kms.CodeKeyNotFound; got != want {
		t.Errorf("%s: IsKeyUnusable = %v, want %v (%v)", what, got, want, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: message spans lines: %q", what, err)
	}
}

func forBoth(t *testing.T, fn func(t *testing.T, hsm bool)) {
	t.Run("KeyVaultRSA", func(t *testing.T) { fn(t, false) })
	t.Run("ManagedHSMOct", func(t *testing.T) { fn(t, true) })
}

func TestFailureRefused(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		s.e.Server.Faults.Set(kmstest.FaultRefuse)
		checkClass(t, "GenerateDataKey, connection refused", s.generate(t.Context()), kms.CodeEndpointUnreachable)
		checkClass(t, "Decrypt, connection refused", s.decrypt(t.Context(), s.dk.Ciphertext), kms.CodeEndpointUnreachable)
		s.e.Server.Faults.Set(kmstest.FaultNone)
		if err := s.decrypt(t.Context(), s.dk.Ciphertext); err != nil {
			t.Fatalf("Decrypt after the endpoint came back err = %v", err)
		}
	})
}

func TestFailureHang(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		s.e.Server.Faults.Set(kmstest.FaultHang)
		defer s.e.Server.Faults.Set(kmstest.FaultNone)

		// The caller's own deadline: internal, matching DeadlineExceeded.
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.decrypt(ctx, s.dk.Ciphertext)
		if kms.CodeOf(err) != kms.CodeInternal || !errors.Is(err, context.DeadlineExceeded) || !kms.IsCanceled(err) || kms.IsEndpointFailure(err) {
			t.Errorf("Decrypt past the caller's deadline err = %v, want internal matching context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Decrypt took %v past a 200ms deadline", d)
		}

		// kms.Client's per-call timeout: endpoint unreachable.
		c := kms.NewClient(kms.WithProvider(kms.SchemeAzure, s.p), kms.WithCallTimeout(200*time.Millisecond))
		dk, err := c.GenerateDataKey(t.Context(), s.key, ec)
		dk.Destroy()
		checkClass(t, "GenerateDataKey past the call timeout", err, kms.CodeEndpointUnreachable)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a per-call timeout matches context.DeadlineExceeded: %v", err)
		}
	})
}

func TestFailureServerError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []azurekv.Option
		tries int
	}{
		{"default budget", nil, 2},
		{"no SDK retries", []azurekv.Option{azurekv.WithMaxRetries(0)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, false, tc.opts...)
			s.e.Server.Faults.Set(kmstest.FaultServerError)
			checkClass(t, "GenerateDataKey, HTTP 503", s.generate(t.Context()), kms.CodeEndpointUnreachable)
			var re *azcore.ResponseError
			if err := s.decrypt(t.Context(), s.dk.Ciphertext); !errors.As(err, &re) || re.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("Decrypt, HTTP 503: err = %v, want the SDK's 503 in the chain", err)
			} else {
				checkClass(t, "Decrypt, HTTP 503", err, kms.CodeEndpointUnreachable)
			}
			if n := s.e.Server.Faults.Ops()[azureemu.OpWrapKey]; n != tc.tries {
				t.Errorf("%d wrapKey requests for one GenerateDataKey, want %d", n, tc.tries)
			}
		})
	}
}

func TestFailureThrottled(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		s.e.Server.Faults.Set(kmstest.FaultThrottle)
		start := time.Now()
		checkClass(t, "GenerateDataKey, HTTP 429", s.generate(t.Context()), kms.CodeThrottled)
		checkClass(t, "Decrypt, HTTP 429", s.decrypt(t.Context(), s.dk.Ciphertext), kms.CodeThrottled)
		// Retry-After: 1 exceeds the 200ms the SDK may wait: no retry, no sleep.
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("two throttled calls took %v: the SDK slept through Retry-After", d)
		}
		if got := s.e.Server.Faults.Ops(); got[azureemu.OpWrapKey] != 1 || got[azureemu.OpUnwrapKey] != 1 {
			t.Errorf("requests %v, want one wrapKey and one unwrapKey", got)
		}
	})
}

func TestFailureKeyDisabled(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		s.e.DisableKey(s.key)
		checkClass(t, "GenerateDataKey, disabled key", s.generate(t.Context()), kms.CodeKeyDisabled)
		err := s.decrypt(t.Context(), s.dk.Ciphertext)
		checkClass(t, "Decrypt, disabled key", err, kms.CodeKeyDisabled)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || re.ErrorCode != "Forbidden" {
			t.Errorf("err = %v, want Key Vault's 403 Forbidden (inner KeyDisabled)", err)
		}
		s.e.EnableKey(s.key)
		if err := s.decrypt(t.Context(), s.dk.Ciphertext); err != nil {
			t.Fatalf("Decrypt after EnableKey err = %v", err)
		}
	})
}

func TestFailureKeyDeleted(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		s.e.DeleteKey(s.key)
		checkClass(t, "GenerateDataKey, deleted key", s.generate(t.Context()), kms.CodeKeyNotFound)
		checkClass(t, "Decrypt, deleted key", s.decrypt(t.Context(), s.dk.Ciphertext), kms.CodeKeyNotFound)
	})
}

func TestFailureDenied(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		s.e.Server.Faults.Deny(azureemu.OpUnwrapKey)
		if err := s.generate(t.Context()); err != nil {
			t.Fatalf("GenerateDataKey with only unwrapKey denied err = %v", err)
		}
		err := s.decrypt(t.Context(), s.dk.Ciphertext)
		checkClass(t, "Decrypt, unwrapKey denied", err, kms.CodeAccessDenied)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
			t.Errorf("err = %v, want Key Vault's 403", err)
		}
		s.e.Server.Faults.Allow(azureemu.OpUnwrapKey)
		s.e.Server.Faults.Deny(azureemu.OpWrapKey)
		checkClass(t, "GenerateDataKey, wrapKey denied", s.generate(t.Context()), kms.CodeAccessDenied)
	})
}

func TestFailureUnknownKey(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		unknown := s.key
		unknown.KeyID = "no-such-key"
		_, err := s.p.GenerateDataKey(t.Context(), unknown, ec)
		checkClass(t, "GenerateDataKey, unknown key", err, kms.CodeKeyNotFound)
		_, err = s.p.Decrypt(t.Context(), unknown, s.dk.Ciphertext, ec)
		checkClass(t, "Decrypt, unknown key", err, kms.CodeKeyNotFound)
		pinned := s.key
		pinned.Version = "0123456789abcdef0123456789abcdef"
		_, err = s.p.GenerateDataKey(t.Context(), pinned, ec)
		checkClass(t, "GenerateDataKey, unknown version", err, kms.CodeKeyNotFound)
	})
}

// A modified ciphertext is invalid_ciphertext — never a key-level error
// that would mark the tenant's key unusable — whichever part was changed.
func TestFailureTampered(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		s := newSetup(t, hsm)
		var other kms.KeyURI
		if hsm {
			other = s.e.CreateOctKey("other-hsm", "other-key")
		} else {
			other = s.e.CreateRSAKey("other-kv", "other-key")
		}
		otherCT := roundTrip(t, s.p, other).Ciphertext
		ct := s.dk.Ciphertext
		kid := kidOf(ct)
		set := func(i int, b byte) []byte { c := append([]byte(nil), ct...); c[i] = b; return c }
		flip := func(i int) []byte { c := append([]byte(nil), ct...); c[i] ^= 0x01; return c }
		cases := []struct {
			name  string
			ct    []byte
			calls int // unwrapKey requests it may cost
		}{
			{"wrapped value flipped", flip(len(ct) - 1), 1},
			{"wrapped value first byte flipped", flip(8 + len(kid)), 1},
			{"magic", set(0, 'k'), 0},
			{"format version", set(4, 9), 0},
			{"algorithm swapped", set(5, map[bool]byte{false: 2, true: 1}[hsm]), 1},
			{"kid length", set(7, ct[7]-1), 0},
			{"kid version: another hex digit", flipHexDigit(ct), 2},
			{"kid names another key", withKID(ct, strings.Replace(kid, "/tenant-key/", "/other-key/", 1)), 1},
			{"kid names the key in another vault", withKID(ct, strings.Replace(kid, "acme-", "other-", 1)), 1},
			{"kid of an unknown key", withKID(ct, strings.Replace(kid, "/tenant-key/", "/gone-key/", 1)), 1},
			{"wrapped value of another key", append(ct[:8+len(kid):8+len(kid)], otherCT[8+len(kidOf(otherCT)):]...), 1},
			{"truncated header", ct[:8+len(kid)/2], 0},
		}
		for _, tc := range cases {
			s.e.Server.Faults.ResetLog()
			err := s.decrypt(t.Context(), tc.ct)
			checkClass(t, "Decrypt, "+tc.name, err, kms.CodeInvalidCiphertext)
			if n := s.e.Server.Faults.Ops()[azureemu.OpUnwrapKey]; n > tc.calls {
				t.Errorf("Decrypt, %s: %d unwrapKey requests, want at most %d", tc.name, n, tc.calls)
			}
		}
	})
}

// closedUDPAddr returns a loopback UDP address nothing listens on.
func closedUDPAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// A DNS failure: Go's resolver, pointed at a closed loopback port (no
// traffic leaves the host), cannot resolve the vault's host.
func TestFailureDNS(t *testing.T) {
	e := azureemu.StartT(t)
	e.CreateRSAKey("acme-kv", "tenant-key")
	dns := closedUDPAddr(t)
	client := e.Server.Client()
	tr := client.Transport.(*http.Transport)
	dialer := &net.Dialer{Resolver: &net.Resolver{PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", dns)
		}}}
	tr.DialContext = dialer.DialContext
	cred, err := e.Credential()
	if err != nil {
		t.Fatal(err)
	}
	p, err := azurekv.New(azurekv.WithCredential(cred), azurekv.WithClientOptions(azcore.ClientOptions{Transport: client}))
	if err != nil {
		t.Fatal(err)
	}
	key := kms.MustParseKeyURI("azurekv://acme-kv.vault.azure.net/keys/tenant-key?endpoint=https://kv.keyward-test.invalid:8443")
	_, err = p.GenerateDataKey(t.Context(), key, ec)
	checkClass(t, "GenerateDataKey, DNS failure", err, kms.CodeEndpointUnreachable)
	var de *net.DNSError
	if !errors.As(err, &de) {
		t.Errorf("err = %v, want a *net.DNSError in the chain", err)
	}
	if n := len(e.Server.Faults.Requests()); n != 0 {
		t.Errorf("%d requests reached the emulator", n)
	}
}

func TestInvalidInput(t *testing.T) {
	s := newSetup(t, true)
	pt := kms.NewSecret(make([]byte, 12)) // not a multiple of 8: A256KW cannot wrap it
	_, err := s.p.Encrypt(t.Context(), s.key, pt, ec)
	checkClass(t, "Encrypt 12 bytes under A256KW", err, kms.CodeInvalidArgument)
	_, err = s.p.Encrypt(t.Context(), s.key, kms.NewSecret(make([]byte, 16)), kms.EncryptionContext{"": "x"})
	checkClass(t, "Encrypt with an invalid context", err, kms.CodeInvalidArgument)
	plain := s.key
	plain.Endpoint = strings.Replace(plain.Endpoint, "https://", "http://", 1)
	_, err = s.p.Encrypt(t.Context(), plain, kms.NewSecret(make([]byte, 16)), ec)
	checkClass(t, "Encrypt to an http:// endpoint", err, kms.CodeInvalidArgument)
	_, err = s.p.Encrypt(t.Context(), kms.MustParseKeyURI("localkms://a.key"), kms.NewSecret(make([]byte, 16)), ec)
	checkClass(t, "Encrypt with a localkms URI", err, kms.CodeInvalidArgument)
	if n := len(s.e.Server.Faults.Requests()); n != 0 {
		t.Errorf("%d requests for invalid input, want 0", n)
	}
	// RSA-OAEP-256 on a 2048-bit key takes at most 190 bytes: 142 of plaintext.
	r := newSetup(t, false)
	for n, want := range map[int]kms.Code{142: "", 143: kms.CodeInvalidArgument} {
		w, err := r.p.Encrypt(t.Context(), r.key, kms.NewSecret(make([]byte, n)), ec)
		if want == "" {
			if err != nil {
				t.Errorf("Encrypt(%d bytes) under RSA-OAEP-256 err = %v", n, err)
			} else if pt, err := r.p.Decrypt(t.Context(), r.key, w.Ciphertext, ec); err != nil || pt.Len() != n {
				t.Errorf("Decrypt(Encrypt(%d bytes)) = %d bytes, %v", n, pt.Len(), err)
			}
			continue
		}
		checkClass(t, "Encrypt too much under RSA-OAEP-256", err, want)
	}
}

// WithAlgorithm changes what wraps; Decrypt always uses the algorithm
// recorded in the ciphertext.
func TestWithAlgorithm(t *testing.T) {
	e, p := newProvider(t)
	rsaKey, octKey := e.CreateRSAKey("acme-kv", "r"), e.CreateOctKey("acme-hsm", "o")
	dkRSA, dkOct := roundTrip(t, p, rsaKey), roundTrip(t, p, octKey)
	swapped, err := e.Provider(azurekv.WithAlgorithm(azurekv.AlgorithmA256KW))
	if err != nil {
		t.Fatal(err)
	}
	_, err = swapped.GenerateDataKey(t.Context(), rsaKey, ec)
	checkClass(t, "GenerateDataKey with A256KW on an RSA key", err, kms.CodeInvalidArgument)
	for key, ct := range map[kms.KeyURI][]byte{rsaKey: dkRSA.Ciphertext, octKey: dkOct.Ciphertext} {
		pt, err := swapped.Decrypt(t.Context(), key, ct, ec)
		if err != nil {
			t.Fatalf("Decrypt(%s) with another configured algorithm err = %v", key, err)
		}
		pt.Destroy()
	}
}
