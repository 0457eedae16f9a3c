package awskms_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
)

// faultCase produces one failure class through the emulator and names the
// code (and, where AWS explains, the reason) it must be classified as.
type faultCase struct {
	name string
	// setup arranges the failure and returns the provider options, the key
	// and the call to make.
	setup      func(t *testing.T, r *rig) (key kms.KeyURI, op string, ciphertext []byte)
	opts       func(t *testing.T, r *rig) []awskms.Option
	timeout    time.Duration // the kms.Client's call timeout (default 2s)
	want       kms.Code
	wantReason awskms.Reason
	wantWords  string // words the message must contain, where the contract says so
	awsCode    string // the AWS error code reachable with errors.As, if any
}

func faultCases() []faultCase {
	keyA := func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) { return r.a, kms.OpGenerateDataKey, nil }
	fault := func(f kmstest.Fault) func(*testing.T, *rig) (kms.KeyURI, string, []byte) {
		return func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) {
			r.e.Server.Faults.Set(f)
			t.Cleanup(func() { r.e.Server.Faults.Set(kmstest.FaultNone) })
			return r.a, kms.OpGenerateDataKey, nil
		}
	}
	return []faultCase{
		{name: "connection refused", setup: fault(kmstest.FaultRefuse), want: kms.CodeEndpointUnreachable},
		{name: "no answer", setup: fault(kmstest.FaultHang), timeout: 300 * time.Millisecond, want: kms.CodeEndpointUnreachable},
		{name: "HTTP 503", setup: fault(kmstest.FaultServerError), want: kms.CodeEndpointUnreachable, awsCode: "ServiceUnavailable"},
		{name: "throttled", setup: fault(kmstest.FaultThrottle), want: kms.CodeThrottled, awsCode: "ThrottlingException"},
		{
			name: "key disabled",
			setup: func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) {
				if err := r.e.DisableKey(t.Context(), r.a); err != nil {
					t.Fatal(err)
				}
				return r.a, kms.OpEncrypt, nil
			},
			want: kms.CodeKeyDisabled, wantReason: awskms.ReasonKeyDisabled, awsCode: "DisabledException",
		},
		{
			name: "key pending deletion",
			setup: func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) {
				if err := r.e.ScheduleDeletion(t.Context(), r.a, 7); err != nil {
					t.Fatal(err)
				}
				return r.a, kms.OpGenerateDataKey, nil
			},
			want: kms.CodeKeyDisabled, wantReason: awskms.ReasonKeyPendingDeletion, wantWords: "pending deletion",
			awsCode: "KMSInvalidStateException",
		},
		{
			name: "decrypt denied by policy",
			setup: func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) {
				ct := generate(t, r.p, r.a)
				r.e.Server.Faults.Deny(kms.OpDecrypt)
				return r.a, kms.OpDecrypt, ct
			},
			want: kms.CodeAccessDenied, wantReason: awskms.ReasonNotAllowed, wantWords: "kms:Decrypt",
			awsCode: "AccessDeniedException",
		},
		{
			name:  "unknown key",
			setup: func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) { return r.missing, kms.OpGenerateDataKey, nil },
			want:  kms.CodeKeyNotFound, wantReason: awskms.ReasonKeyNotFound, awsCode: "NotFoundException",
		},
		{
			name: "tampered ciphertext",
			setup: func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) {
				ct := generate(t, r.p, r.a)
				ct[len(ct)-5] ^= 0x40
				return r.a, kms.OpDecrypt, ct
			},
			want: kms.CodeInvalidCiphertext, awsCode: "InvalidCiphertextException",
		},
		{
			name: "DNS failure",
			setup: func(t *testing.T, r *rig) (kms.KeyURI, string, []byte) {
				return kms.MustParseKeyURI("awskms://" + r.a.KeyID + "?endpoint=http://keyward-test.invalid"), kms.OpGenerateDataKey, nil
			},
			opts: func(t *testing.T, r *rig) []awskms.Option {
				return []awskms.Option{awskms.WithHTTPClient(nxdomainClient(t))}
			},
			want: kms.CodeEndpointUnreachable,
		},
		{
			name:  "wrong secret key",
			setup: keyA,
			opts: func(t *testing.T, r *rig) []awskms.Option {
				return []awskms.Option{awskms.WithCredentials(credentials.NewStaticCredentialsProvider(awsemu.AccessKeyID, "not-the-secret", ""))}
			},
			want: kms.CodeAccessDenied, wantReason: awskms.ReasonCredentials, wantWords: "credentials",
			awsCode: "InvalidSignatureException",
		},
		{
			name:  "unknown access key",
			setup: keyA,
			opts: func(t *testing.T, r *rig) []awskms.Option {
				return []awskms.Option{awskms.WithCredentials(credentials.NewStaticCredentialsProvider("AKIAUNKNOWNKEY000000", "secret", ""))}
			},
			want: kms.CodeAccessDenied, wantReason: awskms.ReasonCredentials, wantWords: "credentials",
			awsCode: "UnrecognizedClientException",
		},
	}
}

func generate(t *testing.T, p kms.Provider, key kms.KeyURI) []byte {
	t.Helper()
	dk, err := p.GenerateDataKey(t.Context(), key, ec)
	if err != nil {
		t.Fatal(err)
	}
	dk.Destroy()
	return dk.Ciphertext
}

func call(ctx context.Context, p kms.Provider, op string, key kms.KeyURI, ct []byte) error {
	switch op {
	case kms.OpGenerateDataKey:
		dk, err := p.GenerateDataKey(ctx, key, ec)
		dk.Destroy()
		return err
	case kms.OpEncrypt:
		_, err := p.Encrypt(ctx, key, kms.NewSecret(make([]byte, 32)), ec)
		return err
	default:
		s, err := p.Decrypt(ctx, key, ct, ec)
		s.Destroy()
		return err
	}
}

// Every failure class, produced through the emulator, is classified
// correctly — through a kms.Client (with its per-call timeout) and, except
// for the timeout, by the provider alone.
func TestFailureClasses(t *testing.T) {
	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			p := r.p
			if tc.opts != nil {
				var err error
				if p, err = r.e.Provider(t.Context(), tc.opts(t, r)...); err != nil {
					t.Fatal(err)
				}
			}
			key, op, ct := tc.setup(t, r)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			client := kms.NewClient(kms.WithProvider(kms.SchemeAWS, p), kms.WithCallTimeout(timeout))
			start := time.Now()
			err := call(t.Context(), client, op, key, ct)
			elapsed := time.Since(start)
			check(t, "through the Client", tc, err)
			if tc.timeout > 0 && elapsed > tc.timeout+time.Second {
				t.Errorf("through the Client: failed after %v, want about the %v call timeout", elapsed, tc.timeout)
			}
			if tc.timeout == 0 {
				check(t, "provider alone", tc, call(t.Context(), p, op, key, ct))
			}
		})
	}
}

func check(t *testing.T, how string, tc faultCase, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: err = nil, want %s", how, tc.want)
	}
	if got := kms.CodeOf(err); got != tc.want || !errors.Is(err, tc.want.Sentinel()) {
		t.Errorf("%s: code = %s, want %s (err %v)", how, got, tc.want, err)
	}
	if kms.IsCanceled(err) {
		t.Errorf("%s: a KMS failure matches the caller's cancellation: %v", how, err)
	}
	if got, want := kms.IsEndpointFailure(err), tc.want == kms.CodeEndpointUnreachable; got != want {
		t.Errorf("%s: IsEndpointFailure = %v, want %v (err %v)", how, got, want, err)
	}
	if got := awskms.ReasonOf(err); got != tc.wantReason {
		t.Errorf("%s: reason = %q, want %q (err %v)", how, got, tc.wantReason, err)
	}
	// The contract names these words for operators (the message is for
	// people; code paths use the code and the reason).
	if tc.wantWords != "" && !strings.Contains(err.Error(), tc.wantWords) {
		t.Errorf("%s: message %q does not say %q", how, err, tc.wantWords)
	}
	if tc.awsCode != "" {
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.awsCode {
			t.Errorf("%s: the SDK's %s is not reachable with errors.As (err %v)", how, tc.awsCode, err)
		}
	}
}

// The caller's own cancellation while the KMS does not answer stays
// distinguishable: it matches context.Canceled and is no endpoint failure.
func TestCallerCancellationDuringHang(t *testing.T) {
	r := newRig(t)
	r.e.Server.Faults.Set(kmstest.FaultHang)
	client := kms.NewClient(kms.WithProvider(kms.SchemeAWS, r.p))
	for name, p := range map[string]kms.Provider{"provider": r.p, "client": client} {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		err := call(ctx, p, kms.OpGenerateDataKey, r.a, nil)
		if !errors.Is(err, context.Canceled) || !kms.IsCanceled(err) || kms.IsEndpointFailure(err) {
			t.Errorf("%s: cancelled during a hang: err = %v, want a cancellation that is no endpoint failure", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: returned %v after the cancellation, want promptly", name, d)
		}
		cancel()
	}
}

// After every kind of call — successes, failures, aliases, another key —
// the emulator's request log holds only GenerateDataKey, Encrypt and
// Decrypt, all of them TrentService operations; the admin operations the
// test made (CreateKey, CreateAlias, DisableKey, ScheduleKeyDeletion, ...)
// are not the provider's and do not appear.
func TestLeastPrivilege(t *testing.T) {
	rec := &recorder{}
	r := newRig(t, awskms.WithHTTPClient(&http.Client{Transport: rec}))
	ctx := t.Context()
	alias, err := r.e.CreateAlias(ctx, "least-privilege", r.a)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.RunConformance(t, r.conformance(r.p))
	for _, key := range []kms.KeyURI{r.a, r.b, alias, r.disabled, r.missing} {
		ct := generate(t, r.p, r.a)
		for _, op := range []string{kms.OpGenerateDataKey, kms.OpEncrypt, kms.OpDecrypt} {
			_ = call(ctx, r.p, op, key, ct)
		}
	}
	if err := r.e.ScheduleDeletion(ctx, r.b, 30); err != nil {
		t.Fatal(err)
	}
	_ = call(ctx, r.p, kms.OpGenerateDataKey, r.b, nil)
	if err := r.e.CancelDeletion(ctx, r.b); err != nil {
		t.Fatal(err)
	}
	if err := r.e.EnableKey(ctx, r.disabled); err != nil {
		t.Fatal(err)
	}
	_ = call(ctx, r.p, kms.OpGenerateDataKey, r.disabled, nil)

	allowed := map[string]bool{kms.OpGenerateDataKey: true, kms.OpEncrypt: true, kms.OpDecrypt: true}
	ops := r.e.Server.Faults.Ops()
	for op, n := range ops {
		if !allowed[op] {
			t.Errorf("the provider called %q (%d times); only GenerateDataKey, Encrypt and Decrypt are allowed", op, n)
		}
	}
	for op := range allowed {
		if ops[op] == 0 {
			t.Errorf("no %s in the request log %v: the test did not exercise it", op, ops)
		}
	}
	for _, q := range rec.requests() {
		op, ok := strings.CutPrefix(q.target, awsemu.TargetPrefix)
		if !ok || !allowed[op] {
			t.Errorf("the provider sent X-Amz-Target %q", q.target)
		}
	}
	if n, m := len(rec.requests()), len(r.e.Server.Faults.Requests()); n != m {
		t.Errorf("the provider sent %d requests, the emulator logged %d", n, m)
	}
}

// nxdomainClient is an HTTP client whose resolver asks a DNS server on
// loopback that answers NXDOMAIN to everything, so a DNS failure is produced
// without asking any real resolver.
func nxdomainClient(t *testing.T) *http.Client {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var queries atomic.Int64
	t.Cleanup(func() {
		pc.Close()
		if queries.Load() == 0 {
			t.Error("the loopback DNS server got no query")
		}
	})
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			queries.Add(1)
			resp := append([]byte(nil), buf[:n]...)
			flags := binary.BigEndian.Uint16(resp[2:4])
			flags |= 0x8000 | 0x0080  // QR, RA
			flags = flags&^0x000f | 3 // RCODE NXDOMAIN
			binary.BigEndian.PutUint16(resp[2:4], flags)
			binary.BigEndian.PutUint16(resp[6:8], 0)  // ANCOUNT
			binary.BigEndian.PutUint16(resp[8:10], 0) // NSCOUNT
			// Keep the question; drop additional records (EDNS).
			binary.BigEndian.PutUint16(resp[10:12], 0)
			resp = resp[:questionEnd(resp)]
			_, _ = pc.WriteTo(resp, addr)
		}
	}()
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Resolver: resolver, Timeout: time.Second}).DialContext
	return &http.Client{Transport: tr}
}

// questionEnd returns the end of the first question of a DNS message.
func questionEnd(m []byte) int {
	i := 12
	for i < len(m) && m[i] != 0 {
		i += int(m[i]) + 1
	}
	i += 1 + 4 // root label, QTYPE, QCLASS
	if i > len(m) {
		return len(m)
	}
	return i
}
