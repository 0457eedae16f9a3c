package awsemu_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmsapi "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
)

// sdk returns a raw AWS KMS client for e, without retries.
func sdk(e *awsemu.Emulator, region string, creds aws.CredentialsProvider) *kmsapi.Client {
	return kmsapi.New(kmsapi.Options{
		Region:       region,
		BaseEndpoint: aws.String(e.URL),
		Credentials:  creds,
		Retryer:      aws.NopRetryer{},
	})
}

func awsCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// Emulators of two regions and of two accounts coexist in one process: each
// names its keys with its own region and account and holds only its own.
func TestRegionsAndAccountsCoexist(t *testing.T) {
	ctx := t.Context()
	emus := []*awsemu.Emulator{
		awsemu.StartT(t, awsemu.WithRegion("eu-west-2")),
		awsemu.StartT(t, awsemu.WithRegion("eu-west-1")),
		awsemu.StartT(t, awsemu.WithRegion("us-east-1"), awsemu.WithAccount("444455556666")),
	}
	for _, e := range emus {
		key, err := e.CreateKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		prefix := "arn:aws:kms:" + e.Region + ":" + e.Account + ":key/"
		if !strings.HasPrefix(key.KeyID, prefix) || key.Region != e.Region || key.Endpoint != e.URL {
			t.Errorf("CreateKey in %s/%s = %s, want an ARN starting %s", e.Region, e.Account, key, prefix)
		}
		c := sdk(e, e.Region, e.Credentials())
		d, err := c.DescribeKey(ctx, &kmsapi.DescribeKeyInput{KeyId: aws.String(key.KeyID)})
		if err != nil {
			t.Fatalf("DescribeKey in %s err = %v", e.Region, err)
		}
		if aws.ToString(d.KeyMetadata.Arn) != key.KeyID || aws.ToString(d.KeyMetadata.AWSAccountId) != e.Account {
			t.Errorf("DescribeKey in %s = ARN %s, account %s; want %s, %s", e.Region,
				aws.ToString(d.KeyMetadata.Arn), aws.ToString(d.KeyMetadata.AWSAccountId), key.KeyID, e.Account)
		}
		l, err := c.ListKeys(ctx, &kmsapi.ListKeysInput{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Keys) != 1 || aws.ToString(l.Keys[0].KeyArn) != key.KeyID {
			t.Errorf("ListKeys in %s = %d keys, want only %s", e.Region, len(l.Keys), key.KeyID)
		}
		// A key ARN of another region is not found here, even with a UUID
		// of a local key.
		other := strings.Replace(key.KeyID, e.Region, "ap-south-1", 1)
		_, err = c.DescribeKey(ctx, &kmsapi.DescribeKeyInput{KeyId: aws.String(other)})
		if awsCode(err) != "NotFoundException" {
			t.Errorf("DescribeKey(%s) in %s err = %v, want NotFoundException", other, e.Region, err)
		}
	}
}

// Admin operations bypass the faults, the request log and the signature
// check, so tests can reconfigure keys while the data plane fails and
// assert the provider's own requests.
func TestAdminBypassesDataPlane(t *testing.T) {
	ctx := t.Context()
	e := awsemu.StartT(t)
	e.Server.Faults.Set(kmstest.FaultRefuse)
	key, err := e.CreateKey(ctx)
	if err != nil {
		t.Fatalf("CreateKey while refusing err = %v", err)
	}
	if _, err := e.CreateAlias(ctx, "admin", key); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		fn   func() error
	}{
		{"DisableKey", func() error { return e.DisableKey(ctx, key) }},
		{"EnableKey", func() error { return e.EnableKey(ctx, key) }},
		{"ScheduleDeletion", func() error { return e.ScheduleDeletion(ctx, key, 7) }},
		{"CancelDeletion", func() error { return e.CancelDeletion(ctx, key) }},
	} {
		if err := step.fn(); err != nil {
			t.Errorf("%s while refusing err = %v", step.name, err)
		}
	}
	e.Server.Faults.Set(kmstest.FaultNone)
	if n := len(e.Server.Faults.Requests()); n != 0 {
		t.Errorf("request log has %d entries after admin operations only: %v", n, e.Server.Faults.Requests())
	}
	if ids := e.AccessKeyIDs(); len(ids) != 0 {
		t.Errorf("signers recorded for admin operations: %q", ids)
	}
	if err := e.ScheduleDeletion(ctx, key, 3); err == nil {
		t.Error("ScheduleDeletion(3 days) succeeded; AWS allows 7 to 30")
	}
}

// The data plane checks SigV4 as AWS does.
func TestSignatureChecked(t *testing.T) {
	ctx := t.Context()
	e := awsemu.StartT(t)
	key, err := e.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	session := aws.Credentials{AccessKeyID: "ASIAKEYWARDSESSION01", SecretAccessKey: "session-secret", SessionToken: "token-1"}
	e.AllowCredentials(session)
	static := func(id, secret, token string) aws.CredentialsProvider {
		return credentials.NewStaticCredentialsProvider(id, secret, token)
	}
	cases := []struct {
		name   string
		region string
		creds  aws.CredentialsProvider
		want   string // AWS error code, "" for success
	}{
		{"test credentials", e.Region, e.Credentials(), ""},
		{"session credentials", e.Region, static(session.AccessKeyID, session.SecretAccessKey, session.SessionToken), ""},
		{"wrong secret", e.Region, static(awsemu.AccessKeyID, "wrong", ""), "InvalidSignatureException"},
		{"unknown access key", e.Region, static("AKIAUNKNOWN000000000", awsemu.SecretAccessKey, ""), "UnrecognizedClientException"},
		{"missing session token", e.Region, static(session.AccessKeyID, session.SecretAccessKey, ""), "UnrecognizedClientException"},
		{"wrong session token", e.Region, static(session.AccessKeyID, session.SecretAccessKey, "token-2"), "UnrecognizedClientException"},
		{"scoped to another region", "eu-west-1", e.Credentials(), "InvalidSignatureException"},
	}
	for _, tc := range cases {
		_, err := sdk(e, tc.region, tc.creds).GenerateDataKey(ctx, &kmsapi.GenerateDataKeyInput{
			KeyId: aws.String(key.KeyID), KeySpec: kmstypes.DataKeySpecAes256,
		})
		if got := awsCode(err); got != tc.want || (tc.want == "" && err != nil) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	ids := e.AccessKeyIDs()
	if len(ids) != len(cases) || ids[0] != awsemu.AccessKeyID || ids[3] != "AKIAUNKNOWN000000000" {
		t.Errorf("recorded signers = %q", ids)
	}

	// An unsigned request.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, strings.NewReader(`{"KeyId":"`+key.KeyID+`","KeySpec":"AES_256"}`))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.GenerateDataKey")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusBadRequest || body["__type"] != "MissingAuthenticationTokenException" {
		t.Errorf("unsigned request: %d %v", resp.StatusCode, body)
	}
}

// Ciphertexts name their key in binary and a changed key reference is
// refused (IncorrectKeyException), as AWS does; local-kms alone would
// ignore it.
func TestCiphertextKeyReference(t *testing.T) {
	ctx := t.Context()
	e := awsemu.StartT(t)
	key, err := e.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := sdk(e, e.Region, e.Credentials())
	out, err := c.GenerateDataKey(ctx, &kmsapi.GenerateDataKeyInput{KeyId: aws.String(key.KeyID), KeySpec: kmstypes.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	ct := out.CiphertextBlob
	if bytes.Contains(ct, []byte("arn:")) {
		t.Error("the ciphertext holds the key ARN in ASCII")
	}
	decrypt := func(blob []byte, keyID *string) error {
		_, err := c.Decrypt(ctx, &kmsapi.DecryptInput{KeyId: keyID, CiphertextBlob: blob})
		return err
	}
	if err := decrypt(ct, aws.String(key.KeyID)); err != nil {
		t.Fatalf("Decrypt err = %v", err)
	}
	if err := decrypt(ct, nil); err != nil {
		t.Fatalf("Decrypt without KeyId err = %v", err)
	}
	changed := bytes.Clone(ct)
	changed[5] ^= 0x01 // inside the key id
	if got := awsCode(decrypt(changed, aws.String(key.KeyID))); got != "IncorrectKeyException" {
		t.Errorf("Decrypt with a changed key reference: %q, want IncorrectKeyException", got)
	}
	// A blob whose sealed part is too short for a nonce made local-kms
	// panic; the emulator answers as AWS does.
	short := append(bytes.Clone(ct[:17]), 0, 0, 0, 0, 1)
	if got := awsCode(decrypt(short, aws.String(key.KeyID))); got != "InvalidCiphertextException" {
		t.Errorf("Decrypt of a 22-byte blob: %q, want InvalidCiphertextException", got)
	}
	if got := awsCode(decrypt([]byte{0x02, 1, 2, 3}, aws.String(key.KeyID))); got != "InvalidCiphertextException" {
		t.Errorf("Decrypt of a foreign blob: %q, want InvalidCiphertextException", got)
	}
}

// The Renderer writes AWS's JSON error shapes, which the SDK decodes into
// the right codes.
func TestRenderer(t *testing.T) {
	for name, tc := range map[string]struct {
		write  func(http.ResponseWriter)
		status int
		code   string
	}{
		"throttled":    {awsemu.Renderer{}.Throttled, http.StatusBadRequest, "ThrottlingException"},
		"server error": {awsemu.Renderer{}.ServerError, http.StatusServiceUnavailable, "ServiceUnavailable"},
		"denied":       {func(w http.ResponseWriter) { awsemu.Renderer{}.Denied(w, "Decrypt") }, http.StatusBadRequest, "AccessDeniedException"},
	} {
		rec := httptest.NewRecorder()
		tc.write(rec)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body %q is not JSON", name, rec.Body)
		}
		if rec.Code != tc.status || body["__type"] != tc.code || rec.Header().Get("Content-Type") != "application/x-amz-json-1.1" {
			t.Errorf("%s: %d %v %q, want %d %s", name, rec.Code, body, rec.Header().Get("Content-Type"), tc.status, tc.code)
		}
	}

	ctx := t.Context()
	e := awsemu.StartT(t)
	key, err := e.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := sdk(e, e.Region, e.Credentials())
	gdk := func() error {
		_, err := c.GenerateDataKey(ctx, &kmsapi.GenerateDataKeyInput{KeyId: aws.String(key.KeyID), KeySpec: kmstypes.DataKeySpecAes256})
		return err
	}
	e.Server.Faults.Set(kmstest.FaultThrottle)
	if got := awsCode(gdk()); got != "ThrottlingException" {
		t.Errorf("throttled through the SDK: %q", got)
	}
	e.Server.Faults.Set(kmstest.FaultServerError)
	if got := awsCode(gdk()); got != "ServiceUnavailable" {
		t.Errorf("server error through the SDK: %q", got)
	}
	e.Server.Faults.Set(kmstest.FaultNone)
	e.Server.Faults.Deny(kms.OpGenerateDataKey)
	err = gdk()
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDeniedException" || !strings.Contains(apiErr.ErrorMessage(), "kms:GenerateDataKey") {
		t.Errorf("denied through the SDK: %v", err)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		target, body string
		op, key      string
	}{
		{"TrentService.GenerateDataKey", `{"KeyId":"arn:aws:kms:eu-west-2:111122223333:key/k","KeySpec":"AES_256"}`, "GenerateDataKey", "arn:aws:kms:eu-west-2:111122223333:key/k"},
		{"TrentService.Decrypt", `{"CiphertextBlob":"AQ==","KeyId":"alias/x"}`, "Decrypt", "alias/x"},
		{"TrentService.CreateAlias", `{"AliasName":"alias/x","TargetKeyId":"k"}`, "CreateAlias", "k"},
		{"TrentService.ListKeys", `{}`, "ListKeys", ""},
		{"AWSSecurityTokenServiceV20110615.AssumeRole", `not json`, "AWSSecurityTokenServiceV20110615.AssumeRole", ""},
		{"", ``, "", ""},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
		r.Header.Set("X-Amz-Target", tc.target)
		op, key := awsemu.Classify(r, []byte(tc.body))
		if op != tc.op || key != tc.key {
			t.Errorf("Classify(%q, %s) = %q, %q; want %q, %q", tc.target, tc.body, op, key, tc.op, tc.key)
		}
	}
}

// An operation local-kms does not emulate gets AWS's UnknownOperationException.
func TestUnknownOperation(t *testing.T) {
	e := awsemu.StartT(t)
	_, err := sdk(e, e.Region, e.Credentials()).RotateKeyOnDemand(t.Context(), &kmsapi.RotateKeyOnDemandInput{KeyId: aws.String("k")})
	if got := awsCode(err); got != "UnknownOperationException" {
		t.Errorf("RotateKeyOnDemand err = %v, want UnknownOperationException", err)
	}
}

// Keys live on in a data directory given with WithDataDir; a directory in
// use by one emulator is refused to a second.
func TestDataDir(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e1, err := awsemu.Start(awsemu.WithDataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	key, err := e1.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := awsemu.Start(awsemu.WithDataDir(dir)); err == nil {
		t.Error("a second emulator on the same data directory started")
	}
	e1.Close()
	e1.Close() // idempotent

	e2 := awsemu.StartT(t, awsemu.WithDataDir(dir))
	key2, err := kms.ParseKeyURI("awskms://" + key.KeyID + "?endpoint=" + e2.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e2.Provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := p.GenerateDataKey(ctx, key2, kms.NewEncryptionContext("acme", kms.PurposeAssetSeed))
	if err != nil {
		t.Fatalf("GenerateDataKey with a key from the earlier run err = %v", err)
	}
	dk.Destroy()
}

func TestStartRefusesBadOptions(t *testing.T) {
	for name, opt := range map[string]awsemu.Option{
		"region":  awsemu.WithRegion("westeros"),
		"account": awsemu.WithAccount("1234"),
	} {
		if e, err := awsemu.Start(opt); err == nil {
			e.Close()
			t.Errorf("Start with a bad %s succeeded", name)
		}
	}
}

// Close releases requests held by FaultHang (they may still be answered
// before the connection closes).
func TestCloseReleasesHang(t *testing.T) {
	e, err := awsemu.Start()
	if err != nil {
		t.Fatal(err)
	}
	key, err := e.CreateKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.Server.Faults.Set(kmstest.FaultHang)
	done := make(chan error, 1)
	go func() {
		_, err := sdk(e, e.Region, e.Credentials()).GenerateDataKey(t.Context(), &kmsapi.GenerateDataKeyInput{
			KeyId: aws.String(key.KeyID), KeySpec: kmstypes.DataKeySpecAes256})
		done <- err
	}()
	for len(e.Server.Faults.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	e.Close()
	select {
	case <-done: // answered or cut off; either way no longer hanging
	case <-time.After(5 * time.Second):
		t.Fatal("a hanging request was not released by Close")
	}
	if ops := e.Server.Faults.Ops(); len(ops) != 1 || ops[kms.OpGenerateDataKey] != 1 {
		t.Errorf("ops = %v, want one GenerateDataKey", ops)
	}
}
