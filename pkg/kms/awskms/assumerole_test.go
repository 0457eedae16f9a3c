package awskms_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
)

// stsStandIn answers AssumeRole as STS does (query protocol, XML). local-kms
// has no STS, so this is the one stand-in of the suite.
type stsStandIn struct {
	*httptest.Server
	creds aws.Credentials
	deny  bool

	mu    sync.Mutex
	calls []url.Values
	auth  []string // Authorization headers
}

func newSTS(t *testing.T) *stsStandIn {
	s := &stsStandIn{creds: aws.Credentials{
		AccessKeyID:     "ASIAKEYWARDASSUMED01",
		SecretAccessKey: "assumed-role-secret-access-key-00000000",
		SessionToken:    "assumed-role-session-token",
	}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *stsStandIn) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.calls = append(s.calls, r.PostForm)
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	if s.deny {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code>`+
			`<Message>User: arn:aws:iam::111122223333:user/keyward is not authorized to perform: sts:AssumeRole</Message></Error><RequestId>r1</RequestId></ErrorResponse>`)
		return
	}
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::111122223333:assumed-role/keyward/%s</Arn>
      <AssumedRoleId>AROAKEYWARDEXAMPLE:%s</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>%s</AccessKeyId>
      <SecretAccessKey>%s</SecretAccessKey>
      <SessionToken>%s</SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata>
</AssumeRoleResponse>`, r.PostForm.Get("RoleSessionName"), r.PostForm.Get("RoleSessionName"),
		s.creds.AccessKeyID, s.creds.SecretAccessKey, s.creds.SessionToken,
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
}

func (s *stsStandIn) requests() ([]url.Values, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls), slices.Clone(s.auth)
}

const roleARN = "arn:aws:iam::111122223333:role/keyward"

// WithAssumeRole: the role is assumed once with the base credentials (and
// the external id), cached, and the assumed credentials sign every KMS call.
func TestAssumeRole(t *testing.T) {
	sts := newSTS(t)
	e := awsemu.StartT(t)
	e.AllowCredentials(sts.creds)
	key, err := e.CreateKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	base := credentials.NewStaticCredentialsProvider("AKIAKEYWARDBASE00001", "base-secret", "")
	p, err := awskms.New(t.Context(), awskms.WithCredentials(base),
		awskms.WithAssumeRole(roleARN, "tenant-acme-external-id"), awskms.WithSTSEndpoint(sts.URL))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		dk, err := p.GenerateDataKey(t.Context(), key, ec)
		if err != nil {
			t.Fatalf("GenerateDataKey with the assumed role err = %v", err)
		}
		pt, err := p.Decrypt(t.Context(), key, dk.Ciphertext, ec)
		if err != nil {
			t.Fatalf("Decrypt with the assumed role err = %v", err)
		}
		pt.Destroy()
		dk.Destroy()
	}
	calls, auth := sts.requests()
	if len(calls) != 1 {
		t.Fatalf("STS got %d AssumeRole calls, want 1 (credentials cached)", len(calls))
	}
	c := calls[0]
	if c.Get("Action") != "AssumeRole" || c.Get("RoleArn") != roleARN || c.Get("ExternalId") != "tenant-acme-external-id" ||
		c.Get("RoleSessionName") != awskms.RoleSessionName {
		t.Errorf("AssumeRole request = %v", c)
	}
	if !strings.Contains(auth[0], "Credential=AKIAKEYWARDBASE00001/") || !strings.Contains(auth[0], "/"+key.Region+"/sts/") {
		t.Errorf("AssumeRole signed with %q, want the base credentials scoped to %s/sts", auth[0], key.Region)
	}
	ids := e.AccessKeyIDs()
	if len(ids) != 6 {
		t.Fatalf("the emulator saw %d signed KMS requests, want 6", len(ids))
	}
	for _, id := range ids {
		if id != sts.creds.AccessKeyID {
			t.Errorf("a KMS call was signed by %q, want the assumed role's %q", id, sts.creds.AccessKeyID)
		}
	}
}

// A role Keyward may not assume is a credentials problem: access denied,
// reason credentials, without a KMS call.
func TestAssumeRoleDenied(t *testing.T) {
	sts := newSTS(t)
	sts.deny = true
	e := awsemu.StartT(t)
	key, err := e.CreateKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p, err := awskms.New(t.Context(), awskms.WithCredentials(e.Credentials()),
		awskms.WithAssumeRole(roleARN, ""), awskms.WithSTSEndpoint(sts.URL))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GenerateDataKey(t.Context(), key, ec)
	if kms.CodeOf(err) != kms.CodeAccessDenied || awskms.ReasonOf(err) != awskms.ReasonCredentials {
		t.Fatalf("GenerateDataKey with a role that cannot be assumed: err = %v (reason %q), want access_denied, reason credentials", err, awskms.ReasonOf(err))
	}
	if calls, _ := sts.requests(); len(calls) == 0 || calls[0].Has("ExternalId") {
		t.Errorf("AssumeRole calls = %v, want at least one without ExternalId", calls)
	}
	if n := len(e.Server.Faults.Requests()); n != 0 {
		t.Errorf("the emulator got %d KMS requests without credentials, want 0", n)
	}
}
