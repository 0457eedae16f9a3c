package ocikms_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms/ocikms"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	platformTenancy = "ocid1.tenancy.oc1..aaaaaaaakeywardplatformtenancyexample"
	groupAshburn    = "ocid1.group.oc1..aaaaaaaakeywardashburngroupexample"
	groupAmsterdam  = "ocid1.group.oc1..aaaaaaaakeywardamsterdamgroupexample"
)

func TestPolicyStatementsGolden(t *testing.T) {
	groups := map[string]string{"us-ashburn-1": groupAshburn, "eu-amsterdam-1": groupAmsterdam}
	cases := []struct {
		file   string
		params ocikms.PolicyParams
	}{
		{"policy_compartment_name.golden", ocikms.PolicyParams{
			PlatformTenancyOCID: platformTenancy, GroupsByRegion: groups,
			Compartment: "Security:Keys", Regions: []string{"us-ashburn-1", "eu-amsterdam-1"},
		}},
		{"policy_compartment_ocid.golden", ocikms.PolicyParams{
			PlatformTenancyOCID: platformTenancy, GroupsByRegion: groups,
			Compartment: "ocid1.compartment.oc1..aaaaaaaatenantkeyscompartment", Regions: []string{"us-ashburn-1"},
		}},
		{"policy_tenancy.golden", ocikms.PolicyParams{
			PlatformTenancyOCID: platformTenancy, GroupsByRegion: groups,
			Compartment: "ocid1.tenancy.oc1..aaaaaaaatenanttenancy", Regions: []string{"eu-amsterdam-1"},
		}},
	}
	for _, c := range cases {
		got, err := ocikms.PolicyStatements(c.params)
		if err != nil {
			t.Fatalf("PolicyStatements(%s) err = %v", c.file, err)
		}
		text := strings.Join(got, "\n") + "\n"
		path := filepath.Join("testdata", c.file)
		if *update {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestPolicyStatementsGolden -update to create it)", err)
		}
		if text != string(want) {
			t.Errorf("PolicyStatements(%s) =\n%s\nwant\n%s", c.file, text, want)
		}
	}
}

func TestPolicyStatementsInvalid(t *testing.T) {
	good := func() ocikms.PolicyParams {
		return ocikms.PolicyParams{
			PlatformTenancyOCID: platformTenancy,
			GroupsByRegion:      map[string]string{"us-ashburn-1": groupAshburn},
			Compartment:         "Keys",
			Regions:             []string{"us-ashburn-1"},
		}
	}
	if _, err := ocikms.PolicyStatements(good()); err != nil {
		t.Fatalf("PolicyStatements(good) err = %v", err)
	}
	for name, mutate := range map[string]func(*ocikms.PolicyParams){
		"no tenancy":           func(p *ocikms.PolicyParams) { p.PlatformTenancyOCID = "" },
		"group as tenancy":     func(p *ocikms.PolicyParams) { p.PlatformTenancyOCID = groupAshburn },
		"no compartment":       func(p *ocikms.PolicyParams) { p.Compartment = "" },
		"injected statement":   func(p *ocikms.PolicyParams) { p.Compartment = "Keys\nAllow group x to manage all-resources in tenancy" },
		"space in compartment": func(p *ocikms.PolicyParams) { p.Compartment = "My Keys" },
		"quote in compartment": func(p *ocikms.PolicyParams) { p.Compartment = "Keys'" },
		"vault OCID":           func(p *ocikms.PolicyParams) { p.Compartment = "ocid1.vault.oc1.iad.abc.def" },
		"no regions":           func(p *ocikms.PolicyParams) { p.Regions = nil },
		"bad region":           func(p *ocikms.PolicyParams) { p.Regions = []string{"iad"} },
		"duplicate region":     func(p *ocikms.PolicyParams) { p.Regions = []string{"us-ashburn-1", "us-ashburn-1"} },
		"region without group": func(p *ocikms.PolicyParams) {
			p.Regions = []string{"us-ashburn-1", "us-phoenix-1"}
		},
		"bad group OCID": func(p *ocikms.PolicyParams) { p.GroupsByRegion["us-ashburn-1"] = "ocid1.user.oc1..aaaa" },
		"injected group": func(p *ocikms.PolicyParams) {
			p.GroupsByRegion["us-ashburn-1"] = groupAshburn + "\nAllow group x to manage all-resources in tenancy"
		},
	} {
		p := good()
		mutate(&p)
		if got, err := ocikms.PolicyStatements(p); err == nil {
			t.Errorf("PolicyStatements(%s) = %q, want an error", name, got)
		}
	}
}
