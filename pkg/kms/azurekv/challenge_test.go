package azurekv_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
)

// wantCode fails the test unless err is a *kms.Error with code.
func wantCode(t *testing.T, what string, err error, code kms.Code) {
	t.Helper()
	var ke *kms.Error
	if !errors.As(err, &ke) || kms.CodeOf(err) != code {
		t.Fatalf("%s err = %v, want a *kms.Error with code %s", what, err, code)
	}
}

// ops returns the operations the emulator received, in order.
func ops(e *azureemu.Emulator) []string {
	var out []string
	for _, r := range e.Server.Faults.Requests() {
		out = append(out, r.Op)
	}
	return out
}

// roundTrip wraps a data key under key and unwraps it.
func roundTrip(t *testing.T, p kms.Provider, key kms.KeyURI) *kms.DataKey {
	t.Helper()
	dk, err := p.GenerateDataKey(t.Context(), key, ec)
	if err != nil {
		t.Fatalf("GenerateDataKey(%s) err = %v", key, err)
	}
	t.Cleanup(dk.Destroy)
	pt, err := p.Decrypt(t.Context(), key, dk.Ciphertext, ec)
	if err != nil {
		t.Fatalf("Decrypt(%s) err = %v", key, err)
	}
	defer pt.Destroy()
	if !pt.Equal(dk.Plaintext) {
		t.Fatal("Decrypt returned other bytes")
	}
	return dk
}

// The first request of a fresh client goes out without a token, gets the
// bearer challenge, and is sent again with a token from the real azidentity
// client-secret flow (OIDC discovery, then the token endpoint): exactly one
// challenge round. Later requests reuse the token.
func TestChallengeFirstRequest(t *testing.T) {
	e, p := newProvider(t)
	key := e.CreateRSAKey("acme-kv", "k")
	dk, err := p.GenerateDataKey(t.Context(), key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	want := []string{azureemu.OpWrapKey, azureemu.OpDiscovery, azureemu.OpToken, azureemu.OpWrapKey}
	if got := ops(e); !slices.Equal(got, want) || e.Challenges() != 1 || e.TokensIssued() != 1 {
		t.Fatalf("first call: requests %v, %d challenges, %d tokens; want %v, 1, 1", got, e.Challenges(), e.TokensIssued(), want)
	}
	pt, err := p.Decrypt(t.Context(), key, dk.Ciphertext, ec)
	if err != nil {
		t.Fatal(err)
	}
	pt.Destroy()
	want = append(want, azureemu.OpUnwrapKey)
	if got := ops(e); !slices.Equal(got, want) || e.Challenges() != 1 || e.TokensIssued() != 1 {
		t.Fatalf("second call: requests %v, %d challenges, %d tokens; want %v, 1, 1", got, e.Challenges(), e.TokensIssued(), want)
	}
	// A Managed HSM is another vault: its own client, challenge and token
	// (for https://managedhsm.azure.net); the authority's metadata is cached.
	roundTrip(t, p, e.CreateOctKey("acme-hsm", "h"))
	if e.Challenges() != 2 || e.TokensIssued() != 2 || e.Server.Faults.Ops()[azureemu.OpDiscovery] != 1 {
		t.Fatalf("Managed HSM key: %d challenges, %d tokens, ops %v; want 2, 2, one discovery", e.Challenges(), e.TokensIssued(), e.Server.Faults.Ops())
	}
}

func TestChallengeScopeVariant(t *testing.T) {
	e := azureemu.StartT(t, azureemu.WithScopeChallenge())
	p, err := e.Provider()
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, p, e.CreateRSAKey("acme-kv", "k"))
	roundTrip(t, p, e.CreateOctKey("acme-hsm", "h"))
	if e.Challenges() != 2 {
		t.Fatalf("%d challenges, want 2", e.Challenges())
	}
}

func TestWrongClientSecret(t *testing.T) {
	e := azureemu.StartT(t)
	key := e.CreateRSAKey("acme-kv", "k")
	const wrong = "not-the-secret-4f1c8e"
	cred, err := azidentity.NewClientSecretCredential(e.TenantID, e.ClientID, wrong,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: e.ClientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := azurekv.New(azurekv.WithCredential(cred), azurekv.WithClientOptions(azcore.ClientOptions{Transport: e.Server.Client()}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GenerateDataKey(t.Context(), key, ec)
	wantCode(t, "GenerateDataKey with a wrong client secret", err, kms.CodeAccessDenied)
	var afe *azidentity.AuthenticationFailedError
	var te *azurekv.TokenError
	if !errors.As(err, &afe) || !errors.As(err, &te) || afe.RawResponse == nil || afe.RawResponse.StatusCode != 401 {
		t.Fatalf("err = %v: want a TokenError around azidentity's 401", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "invalid_client") || strings.Contains(msg, wrong) {
		t.Errorf("message %q should name invalid_client and never the secret", msg)
	}
	if kms.IsRetryable(err) || kms.IsEndpointFailure(err) {
		t.Errorf("a refused credential is retryable or an endpoint failure: %v", err)
	}
	if n := e.Server.Faults.Ops()[azureemu.OpWrapKey]; n != 1 {
		t.Errorf("%d wrapKey requests, want 1 (the challenge round only)", n)
	}
}

// staticCredential returns a fixed token: one the emulator never issued.
type staticCredential string

func (s staticCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestForeignToken(t *testing.T) {
	e := azureemu.StartT(t)
	key := e.CreateRSAKey("acme-kv", "k")
	p, err := azurekv.New(azurekv.WithCredential(staticCredential("eyJhbGciOi.forged.token")),
		azurekv.WithClientOptions(azcore.ClientOptions{Transport: e.Server.Client()}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GenerateDataKey(t.Context(), key, ec)
	wantCode(t, "GenerateDataKey with a token the emulator did not issue", err, kms.CodeAccessDenied)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 401 {
		t.Fatalf("err = %v: want Key Vault's 401", err)
	}
	// The challenge round, then the forged token refused (and challenged
	// again, which the SDK does not follow twice).
	if e.Challenges() != 2 || e.TokensIssued() != 0 {
		t.Fatalf("%d challenges, %d tokens issued; want 2, 0", e.Challenges(), e.TokensIssued())
	}
}

// An identity endpoint that does not answer is an endpoint failure, not a
// refused credential.
func TestIdentityEndpointUnreachable(t *testing.T) {
	e := azureemu.StartT(t)
	key := e.CreateRSAKey("acme-kv", "k")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	co := e.ClientOptions()
	co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: "https://" + closed + "/"}
	// The credential built by WithClientSecret shares the provider's
	// bounded retry budget: the call fails fast.
	p, err := azurekv.New(azurekv.WithClientSecret(e.TenantID, e.ClientID, e.ClientSecret),
		azurekv.WithClientOptions(co), azurekv.WithDisableInstanceDiscovery())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.GenerateDataKey(t.Context(), key, ec)
	wantCode(t, "GenerateDataKey with the identity endpoint down", err, kms.CodeEndpointUnreachable)
	if !kms.IsEndpointFailure(err) {
		t.Errorf("IsEndpointFailure = false for %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("GenerateDataKey took %v with the identity endpoint down: the retry budget is not bounded", d)
	}
}

// WithClientSecret builds the real client-secret credential itself, with
// the provider's transport and cloud.
func TestWithClientSecret(t *testing.T) {
	e := azureemu.StartT(t)
	key := e.CreateOctKey("acme-hsm", "k")
	p, err := azurekv.New(azurekv.WithClientSecret(e.TenantID, e.ClientID, e.ClientSecret),
		azurekv.WithClientOptions(e.ClientOptions()), azurekv.WithDisableInstanceDiscovery())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, p, key)

	bad, err := azurekv.New(azurekv.WithClientSecret(e.TenantID, "00000000-0000-0000-0000-000000000000", e.ClientSecret),
		azurekv.WithClientOptions(e.ClientOptions()), azurekv.WithDisableInstanceDiscovery())
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.GenerateDataKey(t.Context(), key, ec)
	wantCode(t, "GenerateDataKey as an unknown application", err, kms.CodeAccessDenied)
}

// WithWorkloadIdentity: the federated token file is sent as a client
// assertion (the AKS workload identity flow).
func TestWithWorkloadIdentity(t *testing.T) {
	e := azureemu.StartT(t)
	key := e.CreateRSAKey("acme-kv", "k")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "token"), filepath.Join(dir, "other")
	if err := os.WriteFile(good, []byte(e.FederatedToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("eyJ.someone-else.token"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := azurekv.New(azurekv.WithWorkloadIdentity(e.TenantID, e.ClientID, good),
		azurekv.WithClientOptions(e.ClientOptions()), azurekv.WithDisableInstanceDiscovery())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, p, key)

	p, err = azurekv.New(azurekv.WithWorkloadIdentity(e.TenantID, e.ClientID, bad),
		azurekv.WithClientOptions(e.ClientOptions()), azurekv.WithDisableInstanceDiscovery())
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GenerateDataKey(t.Context(), key, ec)
	wantCode(t, "GenerateDataKey with an unknown federated token", err, kms.CodeAccessDenied)
}

func TestNew(t *testing.T) {
	cred := staticCredential("t")
	for name, opts := range map[string][]azurekv.Option{
		"no credential":         nil,
		"two credentials":       {azurekv.WithCredential(cred), azurekv.WithManagedIdentity("")},
		"nil credential":        {azurekv.WithCredential(nil)},
		"unsupported algorithm": {azurekv.WithCredential(cred), azurekv.WithAlgorithm("RSA1_5")},
		"negative retries":      {azurekv.WithCredential(cred), azurekv.WithMaxRetries(-1)},
		"incomplete secret":     {azurekv.WithClientSecret("t", "", "s")},
		"incomplete workload":   {azurekv.WithWorkloadIdentity("t", "c", "")},
	} {
		if p, err := azurekv.New(opts...); err == nil {
			t.Errorf("New(%s) = %v, want an error", name, p)
		}
	}
	for name, opts := range map[string][]azurekv.Option{
		"credential":               {azurekv.WithCredential(cred), azurekv.WithMaxRetries(0), azurekv.WithAlgorithm(azurekv.AlgorithmA256KW)},
		"system-assigned identity": {azurekv.WithManagedIdentity("")},
		"user-assigned identity":   {azurekv.WithManagedIdentity("11111111-2222-3333-4444-555555555555")},
		"client secret, pinned":    {azurekv.WithClientSecret("t", "c", "s"), azurekv.WithAllowedTenants("a", "b")},
	} {
		if _, err := azurekv.New(opts...); err != nil {
			t.Errorf("New(%s) err = %v", name, err)
		}
	}
}
