package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The policy command prints each provider's least-privilege grant with the
// platform's identities, offline, and names the flag to fix when one is
// missing or wrong.
func TestTenantKeyPolicy(t *testing.T) {
	awsURI := "awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	r := run(t, "", "", "tenant", "key", "policy", "--tenant", "acme", "--uri", awsURI)
	var st struct {
		Effect    string
		Principal struct{ AWS []string }
		Action    []string
		Condition map[string]map[string]any
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("aws: %+v", r)
	}
	if st.Effect != "Allow" || len(st.Action) != 3 || strings.Join(st.Principal.AWS, ",") != "arn:aws:iam::111122223333:role/keyward-encryptor" ||
		st.Condition["StringEquals"]["kms:EncryptionContext:keyward:tenant"] != "acme" {
		t.Fatalf("aws statement: %s", r.stdout)
	}
	for _, a := range st.Action {
		if a != "kms:Encrypt" && a != "kms:Decrypt" && a != "kms:GenerateDataKey" {
			t.Errorf("aws statement grants %s", a)
		}
	}

	// A platform config of its own: per-region OCI groups.
	cfg := filepath.Join(t.TempDir(), "platform.json")
	os.WriteFile(cfg, []byte(`{
  "aws": {"principals": {"eu-west-2": ["arn:aws:iam::999988887777:role/keyward-london"], "*": ["arn:aws:iam::999988887777:role/keyward"]}},
  "oci": {"tenancy_ocid": "ocid1.tenancy.oc1..aaaaaaaaplatform",
          "groups_by_region": {"us-ashburn-1": "ocid1.group.oc1..aaaaaaaaashburn", "eu-amsterdam-1": "ocid1.group.oc1..aaaaaaaaamsterdam"},
          "allowed_regions": ["us-ashburn-1", "eu-amsterdam-1"]},
  "azure": {"tenant_id": "11111111-2222-3333-4444-555555555555", "principal_object_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}
}`), 0o600)
	r = run(t, "", "", "tenant", "key", "policy", "--platform-config", cfg, "--tenant", "acme", "--uri", awsURI)
	if r.code != 0 || !strings.Contains(r.stdout, "role/keyward-london") || strings.Contains(r.stdout, `role/keyward"`) {
		t.Fatalf("aws with the region's principal: %+v", r)
	}
	r = run(t, "", "", "tenant", "key", "policy", "--platform-config", cfg, "--provider", "oci", "--tenant", "acme", "--compartment", "Security:Keys")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || !strings.Contains(r.stdout, "ocid1.tenancy.oc1..aaaaaaaaplatform") ||
		!strings.Contains(r.stdout, "ocid1.group.oc1..aaaaaaaaashburn") || !strings.Contains(r.stdout, "ocid1.group.oc1..aaaaaaaaamsterdam") ||
		!strings.Contains(r.stdout, "request.operation='Encrypt'") || !strings.Contains(r.stdout, "request.operation='Decrypt'") ||
		strings.Contains(r.stdout, "GenerateDataEncryptionKey") || !strings.Contains(r.stdout, "use key-family in compartment Security:Keys") {
		t.Fatalf("oci: %+v", r)
	}
	if len(lines) < 3 {
		t.Fatalf("oci: want a define line and an admit statement per region: %q", r.stdout)
	}
	r = run(t, "", "", "--json", "tenant", "key", "policy", "--platform-config", cfg, "--tenant", "acme",
		"--azure-tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47", "--uri", "azurekv://acme.vault.azure.net/keys/keyward")
	var az struct {
		Provider   string
		Operations []string
		Policy     string
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &az) != nil || az.Provider != "azure" ||
		!strings.Contains(az.Policy, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee") || !strings.Contains(az.Policy, "Microsoft.KeyVault/vaults/keys/wrap/action") ||
		!strings.Contains(az.Policy, "Microsoft.KeyVault/vaults/keys/unwrap/action") || strings.Contains(az.Policy, "keys/decrypt/action") {
		t.Fatalf("azure: %+v", r)
	}

	refusals := []struct {
		args    []string
		mention string
	}{
		{[]string{"--provider", "gcp", "--tenant", "acme"}, "--provider"},
		{[]string{"--tenant", "acme"}, "--provider is required"},
		{[]string{"--provider", "aws", "--tenant", "Acme"}, "--tenant"},
		{[]string{"--provider", "oci", "--tenant", "acme"}, "--compartment is required"},
		{[]string{"--provider", "oci", "--tenant", "acme", "--compartment", "c", "--regions", "eu-frankfurt-1"}, "eu-frankfurt-1"},
		{[]string{"--provider", "azure", "--tenant", "acme", "--uri", "azurekv://acme.vault.azure.net/keys/k"}, "--azure-tenant is required"},
		{[]string{"--provider", "azure", "--tenant", "acme", "--azure-tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47"}, "--uri is required"},
		{[]string{"--provider", "oci", "--tenant", "acme", "--uri", awsURI}, "does not match"},
		{[]string{"--provider", "aws", "--tenant", "acme", "--platform-config", filepath.Join(t.TempDir(), "none.json")}, "--platform-config"},
	}
	for _, tc := range refusals {
		r := run(t, "", "", append([]string{"tenant", "key", "policy"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.mention) {
			t.Errorf("%v: %+v, want exit 2 mentioning %q", tc.args, r, tc.mention)
		}
	}
}
