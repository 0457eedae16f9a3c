package providers_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/kms/providers"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/svc"
)

// isolate keeps the machine's own cloud configuration out of a test.
func isolate(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, v := range []string{"AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_SESSION_TOKEN", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Flags fall back to the environment, and the defaults are the documented
// ones.
func TestRegister(t *testing.T) {
	env := map[string]string{"KEYWARD_OCI_AUTH": "instance_principal", "KEYWARD_KMS_TIMEOUT": "750ms", "OCI_CLI_PROFILE": "PROD"}
	var c providers.Config
	f := svc.NewFlags("test", func(k string) string { return env[k] }, io.Discard)
	c.Register(f)
	if err := f.Parse([]string{"--azure-auth", "managed_identity"}); err != nil {
		t.Fatal(err)
	}
	if c.OCIAuth != providers.OCIAuthInstancePrincipal || c.CallTimeout.String() != "750ms" || c.OCIProfile != "PROD" || c.AzureAuth != providers.AzureAuthManagedIdentity {
		t.Fatalf("config %+v", c)
	}
	var d providers.Config
	f = svc.NewFlags("test", nil, io.Discard)
	d.Register(f)
	if err := f.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if d.OCIAuth != providers.OCIAuthConfigFile || d.AzureAuth != providers.AzureAuthDefault || d.CallTimeout != kms.DefaultCallTimeout {
		t.Fatalf("defaults %+v", d)
	}
}

// Unknown authentication modes are refused, naming the variable and the
// modes that exist; every problem is reported at once.
func TestNewClientRefusesUnknownAuth(t *testing.T) {
	isolate(t)
	_, err := providers.NewClient(t.Context(), providers.Config{OCIAuth: "api_key", AzureAuth: "cli"}, platform.Default(), nil)
	if err == nil {
		t.Fatal("accepted unknown auth modes")
	}
	for _, want := range []string{`KEYWARD_OCI_AUTH="api_key"`, "instance_principal", `KEYWARD_AZURE_AUTH="cli"`, "workload_identity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// The AWS provider uses the standard credential chain (here: environment
// variables) and reaches the endpoint the key URI names; an OCI config file
// configures the OCI provider; a cloud set to "none" is not registered, so
// its keys are refused as unsupported without a network call.
func TestNewClientFromEnvironmentAndConfigFile(t *testing.T) {
	isolate(t)
	ctx := t.Context()
	aws := awsemu.StartT(t)
	creds, err := aws.Credentials().Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
	awsKey, err := aws.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}

	oci := ociemu.StartT(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api.pem")
	if err := os.WriteFile(keyFile, oci.PrivateKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config")
	cfg := "[DEFAULT]\nuser=x\n\n[KEYWARD]\nuser=" + oci.UserOCID + "\nfingerprint=" + oci.Fingerprint + "\ntenancy=" + oci.TenancyOCID +
		"\nregion=" + oci.Region + "\nkey_file=" + keyFile + "\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ociKey := oci.CreateKey()

	c, err := providers.NewClient(ctx, providers.Config{
		CallTimeout: kms.DefaultCallTimeout,
		OCIAuth:     providers.OCIAuthConfigFile, OCIConfigFile: cfgFile, OCIProfile: "KEYWARD",
		AzureAuth: providers.AzureAuthNone,
	}, platform.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ec := kms.NewEncryptionContext("acme", kms.PurposeProbe)
	for _, key := range []kms.KeyURI{awsKey, ociKey} {
		dk, err := c.GenerateDataKey(ctx, key, ec)
		if err != nil {
			t.Fatalf("GenerateDataKey(%s): %v", key.Scheme, err)
		}
		back, err := c.Decrypt(ctx, key, dk.Ciphertext, ec)
		if err != nil || string(back.Bytes()) != string(dk.Plaintext.Bytes()) {
			t.Fatalf("Decrypt(%s): %v", key.Scheme, err)
		}
		dk.Destroy()
		back.Destroy()
	}
	if n := len(oci.AuthFailures()); n != 0 {
		t.Errorf("%d OCI signature failures: %v", n, oci.AuthFailures())
	}

	az := kms.MustParseKeyURI("azurekv://acme.vault.azure.net/keys/k")
	_, err = c.GenerateDataKey(ctx, az, ec)
	var ke *kms.Error
	if !errors.As(err, &ke) || ke.Code != kms.CodeInvalidArgument {
		t.Fatalf("azure key with azure auth none: %v", err)
	}
}

// A missing OCI config file leaves OCI unregistered (most dev machines have
// none); a broken one is an error naming the file.
func TestOCIConfigFile(t *testing.T) {
	isolate(t)
	c, err := providers.NewClient(t.Context(), providers.Config{OCIAuth: providers.OCIAuthConfigFile, AzureAuth: providers.AzureAuthNone}, platform.Default(), nil)
	if err != nil {
		t.Fatalf("no ~/.oci/config: %v", err)
	}
	_, err = c.GenerateDataKey(t.Context(), kms.MustParseKeyURI("ocikms://ocid1.key.oc1.iad.v.k?endpoint=https://v-crypto.kms.us-ashburn-1.oraclecloud.com"), kms.NewEncryptionContext("acme", kms.PurposeProbe))
	var ke *kms.Error
	if !errors.As(err, &ke) || ke.Code != kms.CodeInvalidArgument {
		t.Fatalf("OCI key without OCI configuration: %v", err)
	}

	bad := filepath.Join(t.TempDir(), "config")
	os.WriteFile(bad, []byte("[DEFAULT]\nuser=only\n"), 0o600)
	_, err = providers.NewClient(t.Context(), providers.Config{OCIAuth: providers.OCIAuthConfigFile, OCIConfigFile: bad, OCIProfile: "MISSING", AzureAuth: providers.AzureAuthNone}, platform.Default(), nil)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("broken OCI config: %v", err)
	}
}
