package ociemu_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/kms/ocikms"
	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/keymanagement"
)

var ad = map[string]string{"keyward:tenant": "acme", "keyward:purpose": "asset-seed"}

// client is a plain OCI SDK crypto client for e, without retries or
// circuit breaker.
func client(t *testing.T, e *ociemu.Emulator) keymanagement.KmsCryptoClient {
	t.Helper()
	cp := common.NewRawConfigurationProvider(e.TenancyOCID, e.UserOCID, e.Region, e.Fingerprint, string(e.PrivateKeyPEM), nil)
	kc, err := keymanagement.NewKmsCryptoClientWithConfigurationProvider(cp, e.URL)
	if err != nil {
		t.Fatal(err)
	}
	kc.HTTPClient = e.Server.Client()
	kc.Configuration.CircuitBreaker = nil
	none := common.NoRetryPolicy()
	kc.Configuration.RetryPolicy = &none
	return kc
}

func wantServiceError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var se common.ServiceError
	if !errors.As(err, &se) {
		t.Fatalf("%s err = %v, want HTTP %d %s", what, err, status, code)
	}
	if se.GetHTTPStatusCode() != status || se.GetCode() != code || se.GetOpcRequestID() == "" {
		t.Fatalf("%s = HTTP %d %s (opc-request-id %q), want %d %s with a request id",
			what, se.GetHTTPStatusCode(), se.GetCode(), se.GetOpcRequestID(), status, code)
	}
}

func generate(t *testing.T, kc keymanagement.KmsCryptoClient, keyID string, include bool, length int, ad map[string]string) (keymanagement.GenerateDataEncryptionKeyResponse, error) {
	t.Helper()
	return kc.GenerateDataEncryptionKey(context.Background(), keymanagement.GenerateDataEncryptionKeyRequest{
		GenerateKeyDetails: keymanagement.GenerateKeyDetails{
			KeyId:               common.String(keyID),
			IncludePlaintextKey: common.Bool(include),
			KeyShape:            &keymanagement.KeyShape{Algorithm: keymanagement.KeyShapeAlgorithmAes, Length: common.Int(length)},
			AssociatedData:      ad,
		},
	})
}

func decrypt(kc keymanagement.KmsCryptoClient, keyID, ct string, ad map[string]string) (keymanagement.DecryptResponse, error) {
	return kc.Decrypt(context.Background(), keymanagement.DecryptRequest{DecryptDataDetails: keymanagement.DecryptDataDetails{
		KeyId: common.String(keyID), Ciphertext: common.String(ct), AssociatedData: ad,
	}})
}

// TestGenerateDataEncryptionKey through the real SDK: AES keys of the
// asked length, a ciphertext that Decrypt opens only with the same
// associated data, and a response without key version (as OCI's
// GeneratedKey).
func TestGenerateDataEncryptionKey(t *testing.T) {
	e := ociemu.StartT(t)
	kc := client(t, e)
	key := e.CreateKey()
	resp, err := generate(t, kc, key.KeyID, true, 32, ad)
	if err != nil {
		t.Fatalf("GenerateDataEncryptionKey err = %v", err)
	}
	pt, err := base64.StdEncoding.DecodeString(*resp.Plaintext)
	if err != nil || len(pt) != 32 || resp.PlaintextChecksum == nil {
		t.Fatalf("plaintext = %d bytes (%v), checksum %v; want 32 bytes and a checksum", len(pt), err, resp.PlaintextChecksum)
	}
	dec, err := decrypt(kc, key.KeyID, *resp.Ciphertext, ad)
	if err != nil {
		t.Fatalf("Decrypt err = %v", err)
	}
	if *dec.Plaintext != *resp.Plaintext || *dec.PlaintextChecksum != *resp.PlaintextChecksum {
		t.Fatal("Decrypt returned another key")
	}
	if dec.KeyVersionId == nil || *dec.KeyVersionId != e.CurrentVersion(key) || *dec.KeyId != key.KeyID {
		t.Fatalf("Decrypt named key %v version %v, want %s %s", dec.KeyId, dec.KeyVersionId, key.KeyID, e.CurrentVersion(key))
	}
	_, err = decrypt(kc, key.KeyID, *resp.Ciphertext, map[string]string{"keyward:tenant": "globex", "keyward:purpose": "asset-seed"})
	wantServiceError(t, "Decrypt with other associated data", err, 400, "InvalidParameter")
	_, err = decrypt(kc, key.KeyID, *resp.Ciphertext, nil)
	wantServiceError(t, "Decrypt without associated data", err, 400, "InvalidParameter")

	resp, err = generate(t, kc, key.KeyID, false, 16, nil)
	if err != nil || resp.Plaintext != nil || resp.Ciphertext == nil {
		t.Fatalf("GenerateDataEncryptionKey without plaintext = %+v, %v", resp.GeneratedKey, err)
	}
	if dec, err := decrypt(kc, key.KeyID, *resp.Ciphertext, nil); err != nil {
		t.Fatalf("Decrypt of a 16-byte key err = %v", err)
	} else if b, _ := base64.StdEncoding.DecodeString(*dec.Plaintext); len(b) != 16 {
		t.Fatalf("16-byte key decrypts to %d bytes", len(b))
	}
	_, err = generate(t, kc, key.KeyID, true, 20, nil)
	wantServiceError(t, "GenerateDataEncryptionKey of 20 bytes", err, 400, "InvalidParameter")
	_, err = kc.GenerateDataEncryptionKey(context.Background(), keymanagement.GenerateDataEncryptionKeyRequest{GenerateKeyDetails: keymanagement.GenerateKeyDetails{
		KeyId: common.String(key.KeyID), IncludePlaintextKey: common.Bool(true),
		KeyShape: &keymanagement.KeyShape{Algorithm: keymanagement.KeyShapeAlgorithmRsa, Length: common.Int(256)},
	}})
	wantServiceError(t, "GenerateDataEncryptionKey of an RSA shape", err, 400, "InvalidParameter")
}

func TestEncryptDecryptVersions(t *testing.T) {
	e := ociemu.StartT(t)
	kc := client(t, e)
	key := e.CreateKey()
	ctx := context.Background()
	enc := func(version string) keymanagement.EncryptResponse {
		t.Helper()
		req := keymanagement.EncryptRequest{EncryptDataDetails: keymanagement.EncryptDataDetails{
			KeyId: common.String(key.KeyID), Plaintext: common.String("aGVsbG8="), AssociatedData: ad,
		}}
		if version != "" {
			req.KeyVersionId = common.String(version)
		}
		resp, err := kc.Encrypt(ctx, req)
		if err != nil {
			t.Fatalf("Encrypt err = %v", err)
		}
		return resp
	}
	v1 := e.CurrentVersion(key)
	first := enc("")
	if *first.KeyVersionId != v1 || *first.KeyId != key.KeyID || first.EncryptionAlgorithm != keymanagement.EncryptedDataEncryptionAlgorithmAes256Gcm {
		t.Fatalf("Encrypt = key %s version %s %s, want %s %s AES_256_GCM", *first.KeyId, *first.KeyVersionId, first.EncryptionAlgorithm, key.KeyID, v1)
	}
	v2 := e.RotateKey(key)
	if got := enc(""); *got.KeyVersionId != v2 {
		t.Fatalf("Encrypt after rotation used %s, want %s", *got.KeyVersionId, v2)
	}
	if got := enc(v1); *got.KeyVersionId != v1 {
		t.Fatalf("Encrypt pinned to %s used %s", v1, *got.KeyVersionId)
	}
	dec, err := decrypt(kc, key.KeyID, *first.Ciphertext, ad)
	if err != nil || *dec.Plaintext != "aGVsbG8=" || *dec.KeyVersionId != v1 {
		t.Fatalf("Decrypt of a version-1 ciphertext = %v, %v", dec.DecryptedData, err)
	}
	_, err = kc.Decrypt(ctx, keymanagement.DecryptRequest{DecryptDataDetails: keymanagement.DecryptDataDetails{
		KeyId: common.String(key.KeyID), Ciphertext: first.Ciphertext, AssociatedData: ad, KeyVersionId: common.String(v2),
	}})
	wantServiceError(t, "Decrypt naming the wrong version", err, 400, "InvalidParameter")

	// Another key of the same vault cannot open it.
	_, err = decrypt(kc, e.CreateKey().KeyID, *first.Ciphertext, ad)
	wantServiceError(t, "Decrypt under another key", err, 400, "InvalidParameter")
	// Plaintext bounds.
	for name, pt := range map[string]string{
		"4097 bytes": base64.StdEncoding.EncodeToString(make([]byte, 4097)),
		"not base64": "!!!",
		"empty":      "",
	} {
		_, err = kc.Encrypt(ctx, keymanagement.EncryptRequest{EncryptDataDetails: keymanagement.EncryptDataDetails{
			KeyId: common.String(key.KeyID), Plaintext: common.String(pt),
		}})
		wantServiceError(t, "Encrypt of "+name, err, 400, "InvalidParameter")
	}
	if _, err := kc.Encrypt(ctx, keymanagement.EncryptRequest{EncryptDataDetails: keymanagement.EncryptDataDetails{
		KeyId: common.String(key.KeyID), Plaintext: common.String(base64.StdEncoding.EncodeToString(make([]byte, 4096))),
	}}); err != nil {
		t.Fatalf("Encrypt of 4096 bytes err = %v", err)
	}
	_, err = kc.Encrypt(ctx, keymanagement.EncryptRequest{EncryptDataDetails: keymanagement.EncryptDataDetails{
		KeyId: common.String(key.KeyID), Plaintext: common.String("aGVsbG8="),
		EncryptionAlgorithm: keymanagement.EncryptDataDetailsEncryptionAlgorithmRsaOaepSha256,
	}})
	wantServiceError(t, "Encrypt with RSA_OAEP_SHA_256", err, 400, "InvalidParameter")
	_, err = kc.Encrypt(ctx, keymanagement.EncryptRequest{EncryptDataDetails: keymanagement.EncryptDataDetails{
		KeyId: common.String(key.KeyID), Plaintext: common.String("aGVsbG8="),
		AssociatedData: map[string]string{"k": strings.Repeat("v", 4090)},
	}})
	wantServiceError(t, "Encrypt with 4096+ characters of associated data", err, 400, "InvalidParameter")
}

func TestKeyStates(t *testing.T) {
	e := ociemu.StartT(t)
	kc := client(t, e)
	key := e.CreateKey()
	resp, err := generate(t, kc, key.KeyID, true, 32, ad)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		set   func(kms.KeyURI)
		state string
	}{
		{"disabled", e.DisableKey, ociemu.StateDisabled},
		{"pending deletion", e.ScheduleDeletion, ociemu.StatePendingDeletion},
	} {
		c.set(key)
		if got := e.State(key); got != c.state {
			t.Fatalf("State = %s, want %s", got, c.state)
		}
		_, err = decrypt(kc, key.KeyID, *resp.Ciphertext, ad)
		wantServiceError(t, "Decrypt with a "+c.name+" key", err, 409, "IncorrectState")
		_, err = generate(t, kc, key.KeyID, true, 32, ad)
		wantServiceError(t, "GenerateDataEncryptionKey with a "+c.name+" key", err, 409, "IncorrectState")
		e.EnableKey(key)
		if _, err := decrypt(kc, key.KeyID, *resp.Ciphertext, ad); err != nil {
			t.Fatalf("Decrypt after EnableKey err = %v", err)
		}
	}
	_, err = decrypt(kc, e.UnknownKey().KeyID, *resp.Ciphertext, ad)
	wantServiceError(t, "Decrypt with an unknown key", err, 404, "NotAuthorizedOrNotFound")
}

// TestFaults: the Renderer's answers as the SDK sees them, and the
// Classifier's request log.
func TestFaults(t *testing.T) {
	e := ociemu.StartT(t)
	kc := client(t, e)
	key := e.CreateKey()
	for _, c := range []struct {
		fault  kmstest.Fault
		status int
		code   string
	}{
		{kmstest.FaultThrottle, 429, "TooManyRequests"},
		{kmstest.FaultServerError, 500, "InternalServerError"},
	} {
		e.Server.Faults.Set(c.fault)
		_, err := generate(t, kc, key.KeyID, true, 32, nil)
		wantServiceError(t, c.fault.String(), err, c.status, c.code)
	}
	e.Server.Faults.Set(kmstest.FaultNone)
	e.Server.Faults.Deny(ociemu.OpGenerateDataEncryptionKey)
	_, err := generate(t, kc, key.KeyID, true, 32, nil)
	wantServiceError(t, "GenerateDataEncryptionKey denied", err, 404, "NotAuthorizedOrNotFound")
	e.Server.Faults.Allow(ociemu.OpGenerateDataEncryptionKey)
	if _, err := generate(t, kc, key.KeyID, true, 32, nil); err != nil {
		t.Fatalf("GenerateDataEncryptionKey allowed again err = %v", err)
	}
	log := e.Server.Faults.Requests()
	if len(log) != 4 {
		t.Fatalf("request log has %d entries, want 4", len(log))
	}
	for _, r := range log {
		if r.Op != ociemu.OpGenerateDataEncryptionKey || r.KeyID != key.KeyID {
			t.Fatalf("request log entry %+v, want GenerateDataEncryptionKey on %s", r, key.KeyID)
		}
	}
}

// TestManagementCallsAreVisible: a management operation (what Keyward must
// never call) is answered 404 NotFound, as at a crypto endpoint, and shows
// in the request log under its method and path, so least-privilege tests
// catch it.
func TestManagementCallsAreVisible(t *testing.T) {
	e := ociemu.StartT(t)
	key := e.CreateKey()
	cp := common.NewRawConfigurationProvider(e.TenancyOCID, e.UserOCID, e.Region, e.Fingerprint, string(e.PrivateKeyPEM), nil)
	mc, err := keymanagement.NewKmsManagementClientWithConfigurationProvider(cp, e.URL)
	if err != nil {
		t.Fatal(err)
	}
	mc.HTTPClient = e.Server.Client()
	mc.Configuration.CircuitBreaker = nil
	_, err = mc.GetKey(context.Background(), keymanagement.GetKeyRequest{KeyId: common.String(key.KeyID)})
	wantServiceError(t, "GetKey", err, 404, "NotFound")
	ops := e.Server.Faults.Ops()
	if ops["GET /20180608/keys/"+key.KeyID] != 1 {
		t.Fatalf("request log ops = %v, want the GetKey call by method and path", ops)
	}
}

// TestRequestChecks: requests the SDK would not send are refused as OCI
// would refuse them.
func TestRequestChecks(t *testing.T) {
	e := ociemu.StartT(t)
	key := e.CreateKey()
	send := func(method, path, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, e.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		cp := common.NewRawConfigurationProvider(e.TenancyOCID, e.UserOCID, e.Region, e.Fingerprint, string(e.PrivateKeyPEM), nil)
		req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		if err := common.DefaultRequestSigner(cp).Sign(req); err != nil {
			t.Fatal(err)
		}
		resp, err := e.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown field", "POST", ociemu.PathEncrypt, `{"keyId":"` + key.KeyID + `","plaintext":"AAAA","extra":1}`, 400, "CannotParseRequest"},
		{"not JSON", "POST", ociemu.PathEncrypt, `keyId=x`, 400, "CannotParseRequest"},
		{"no keyId", "POST", ociemu.PathEncrypt, `{"plaintext":"AAAA"}`, 400, "MissingParameter"},
		{"no plaintext", "POST", ociemu.PathEncrypt, `{"keyId":"` + key.KeyID + `"}`, 400, "MissingParameter"},
		{"no ciphertext", "POST", ociemu.PathDecrypt, `{"keyId":"` + key.KeyID + `"}`, 400, "MissingParameter"},
		{"no key shape", "POST", ociemu.PathGenerateDataEncryptionKey, `{"keyId":"` + key.KeyID + `","includePlaintextKey":true}`, 400, "MissingParameter"},
		{"GET", "GET", ociemu.PathEncrypt, ``, 405, "MethodNotAllowed"},
		{"unknown path", "POST", "/20180608/sign", `{}`, 404, "NotFound"},
	} {
		resp := send(c.method, c.path, c.body)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.status || !bytes.Contains(b, []byte(`"code":"`+c.code+`"`)) {
			t.Errorf("%s: HTTP %d %s, want %d %s", c.name, resp.StatusCode, b, c.status, c.code)
		}
	}
	if f := e.AuthFailures(); len(f) != 0 {
		t.Fatalf("auth failures %v for correctly signed requests", f)
	}
}

func TestStartOptions(t *testing.T) {
	if _, err := ociemu.Start(ociemu.WithRegion("Ashburn")); err == nil {
		t.Fatal("Start(WithRegion(Ashburn)) succeeded")
	}
	for region, part := range map[string]string{"us-ashburn-1": "iad", "eu-amsterdam-1": "ams", "eu-zurich-1": "eu-zurich-1"} {
		e := ociemu.StartT(t, ociemu.WithRegion(region))
		key := e.CreateKey()
		if got := strings.Split(key.KeyID, ".")[3]; got != part {
			t.Errorf("region %s: OCID region part %q, want %q", region, got, part)
		}
		if err := ocikms.ValidateKeyOCID(key.KeyID); err != nil {
			t.Errorf("emulator key OCID refused: %v", err)
		}
		if key.Region != region || key.Endpoint != e.URL || e.Region != region {
			t.Errorf("key URI %s, want region %s and endpoint %s", key, region, e.URL)
		}
		if kms.MustParseKeyURI(key.String()) != key {
			t.Errorf("key URI %s does not round-trip", key)
		}
	}
	e := ociemu.StartT(t)
	if !regexp.MustCompile(`^([0-9a-f]{2}:){15}[0-9a-f]{2}$`).MatchString(e.Fingerprint) {
		t.Errorf("Fingerprint = %q, want OCI's aa:bb:... form", e.Fingerprint)
	}
	if _, err := common.PrivateKeyFromBytes(e.PrivateKeyPEM, nil); err != nil {
		t.Errorf("PrivateKeyPEM does not parse with the SDK: %v", err)
	}
	// Naming a key the emulator does not have panics, and leaves the
	// emulator usable (the lock is released) for a test that recovers.
	foreign := ociemu.StartT(t).CreateKey()
	for name, fn := range map[string]func(){
		"DisableKey": func() { e.DisableKey(foreign) },
		"RotateKey":  func() { e.RotateKey(foreign) },
		"State":      func() { e.State(foreign) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s of a key of another emulator did not panic", name)
				}
			}()
			fn()
		}()
	}
	done := make(chan struct{})
	go func() { e.DisableKey(e.CreateKey()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the emulator is locked after a panic")
	}
}

func TestStateFileSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "oci.json")
	e1, err := ociemu.Start(ociemu.WithStateFile(file))
	if err != nil {
		t.Fatal(err)
	}
	key := e1.CreateKey()
	e1.RotateKey(key)
	p1, err := e1.Provider()
	if err != nil {
		t.Fatal(err)
	}
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	dk, err := p1.GenerateDataKey(context.Background(), key, ec)
	if err != nil {
		t.Fatal(err)
	}
	addr := e1.Server.Addr
	e1.Close()
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", st, err)
	}
	e2, err := ociemu.Start(ociemu.WithStateFile(file), ociemu.WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if e2.URL != key.Endpoint {
		t.Fatalf("restarted on %s, key names %s", e2.URL, key.Endpoint)
	}
	p2, err := e2.Provider()
	if err != nil {
		t.Fatal(err)
	}
	back, err := p2.Decrypt(context.Background(), key, dk.Ciphertext, ec)
	if err != nil || !bytes.Equal(back.Bytes(), dk.Plaintext.Bytes()) {
		t.Fatalf("decrypt after restart: %v", err)
	}
}
