package platform_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/platform"
)

func TestDefaultIsValidAndRestrictsOCI(t *testing.T) {
	c := platform.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ok := kms.MustParseKeyURI("ocikms://ocid1.key.oc1.iad.v.k?endpoint=https://v-crypto.kms.us-ashburn-1.oraclecloud.com")
	if err := c.CheckRegion(ok); err != nil {
		t.Errorf("ashburn refused: %v", err)
	}
	far := kms.MustParseKeyURI("ocikms://ocid1.key.oc1.fra.v.k?endpoint=https://v-crypto.kms.eu-frankfurt-1.oraclecloud.com")
	err := c.CheckRegion(far)
	if !errors.Is(err, platform.ErrRegionNotServed) || !strings.Contains(err.Error(), "eu-frankfurt-1") || !strings.Contains(err.Error(), "eu-amsterdam-1") {
		t.Errorf("frankfurt: %v", err)
	}
	// AWS has no allowlist by default.
	if err := c.CheckRegion(kms.MustParseKeyURI("awskms://alias/x?region=ap-south-1")); err != nil {
		t.Errorf("aws: %v", err)
	}
}

func TestIdentities(t *testing.T) {
	c := platform.Default()
	c.AWS.Principals["eu-west-1"] = []string{"arn:aws:iam::111122223333:role/keyward-eu-west-1"}
	if ids := c.Identities(kms.MustParseKeyURI("awskms://alias/x?region=eu-west-1")); len(ids) != 1 || !strings.HasSuffix(ids[0].ID, "keyward-eu-west-1") {
		t.Errorf("regional principal: %+v", ids)
	}
	if ids := c.Identities(kms.MustParseKeyURI("awskms://alias/x?region=us-east-2")); len(ids) != 1 || !strings.HasSuffix(ids[0].ID, "keyward-encryptor") {
		t.Errorf("default principal: %+v", ids)
	}
	if ids := c.Identities(kms.MustParseKeyURI("ocikms://ocid1.key.oc1.phx.v.k?endpoint=https://v-crypto.kms.us-phoenix-1.oraclecloud.com")); len(ids) != 1 || ids[0].Kind != "oci_group" {
		t.Errorf("oci: %+v", ids)
	}
	if ids := c.Identities(kms.MustParseKeyURI("azurekv://v.vault.azure.net/keys/k")); len(ids) != 1 || ids[0].ID != c.Azure.PrincipalObjectID {
		t.Errorf("azure: %+v", ids)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"aws":{"principals":{"*":["arn:aws:iam::999988887777:role/kw"]},"allowed_regions":["eu-west-2"]},"oci":{"tenancy_ocid":"ocid1.tenancy.oc1..aaaa","groups_by_region":{}},"azure":{}}`), 0o600)
	c, err := platform.Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.OCI.AllowedRegions) != 4 || c.CheckRegion(kms.MustParseKeyURI("awskms://alias/x?region=eu-west-1")) == nil {
		t.Errorf("loaded %+v", c)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"aws":{"principals":{"*":["not-an-arn"]}},"azure":{"tenant_id":"nope"}}`), 0o600)
	_, err = platform.Load(bad)
	if err == nil || !strings.Contains(err.Error(), "aws.principals") || !strings.Contains(err.Error(), "azure.tenant_id") {
		t.Errorf("bad config: %v", err)
	}
	if _, err := platform.Load(filepath.Join(dir, "typo.json")); err == nil {
		t.Error("missing file accepted")
	}
	os.WriteFile(filepath.Join(dir, "unknown.json"), []byte(`{"gcp":{}}`), 0o600)
	if _, err := platform.Load(filepath.Join(dir, "unknown.json")); err == nil {
		t.Error("unknown field accepted")
	}
}
