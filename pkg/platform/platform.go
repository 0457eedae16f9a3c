// Package platform holds the platform operator's settings that are not
// tenant-specific: which identities of the platform use customer keys (so
// tenants can be told exactly whom to grant), and which regions the
// platform serves customers' keys from, per provider.
//
// It is a JSON document (KEYWARD_PLATFORM_CONFIG names the file); the
// defaults describe `keyward dev` and its emulators.
package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/keyward/keyward/pkg/kms"
)

// Config is the platform document.
type Config struct {
	AWS   AWS   `json:"aws"`
	OCI   OCI   `json:"oci"`
	Azure Azure `json:"azure"`
}

// AWS describes the platform's AWS identities.
type AWS struct {
	// Principals are the IAM role ARNs Keyward's workers use, by region;
	// "*" applies to every region without an entry of its own.
	Principals map[string][]string `json:"principals"`
	// AllowedRegions, when not empty, restricts customer keys to these regions.
	AllowedRegions []string `json:"allowed_regions,omitempty"`
	// AssumeRoleARN, when set, is assumed on top of the default credential
	// chain for every KMS call.
	AssumeRoleARN string `json:"assume_role_arn,omitempty"`
}

// OCI describes the platform's OCI identities.
type OCI struct {
	// TenancyOCID is the platform's own tenancy.
	TenancyOCID string `json:"tenancy_ocid"`
	// GroupsByRegion are the IAM groups (OCIDs) of Keyward's workers per
	// region; customers admit these groups in their policy.
	GroupsByRegion map[string]string `json:"groups_by_region"`
	// AllowedRegions are the regions the platform serves OCI customers from.
	AllowedRegions []string `json:"allowed_regions"`
}

// Azure describes the platform's Entra ID identity.
type Azure struct {
	// TenantID is the platform's Entra ID tenant.
	TenantID string `json:"tenant_id"`
	// PrincipalObjectID is the object id of the service principal (or
	// managed identity) Keyward's workers use.
	PrincipalObjectID string `json:"principal_object_id"`
	// AllowedRegions is informational for Azure (vaults are global names).
}

// DefaultOCIRegions are the regions the platform serves OCI customers from
// unless configured otherwise.
var DefaultOCIRegions = []string{"us-ashburn-1", "us-phoenix-1", "us-sanjose-1", "eu-amsterdam-1"}

// Default is the configuration of `keyward dev` (and of tests): the
// identities are the emulators' and are placeholders elsewhere.
func Default() Config {
	groups := map[string]string{}
	for _, r := range DefaultOCIRegions {
		groups[r] = "ocid1.group.oc1..aaaaaaaakeyward" + strings.ReplaceAll(r, "-", "")
	}
	return Config{
		AWS: AWS{Principals: map[string][]string{"*": {"arn:aws:iam::111122223333:role/keyward-encryptor"}}},
		OCI: OCI{
			TenancyOCID:    "ocid1.tenancy.oc1..aaaaaaaakeywardplatform",
			GroupsByRegion: groups,
			AllowedRegions: slices.Clone(DefaultOCIRegions),
		},
		Azure: Azure{
			TenantID:          "00000000-0000-0000-0000-00000000cafe",
			PrincipalObjectID: "00000000-0000-0000-0000-0000000beef0",
		},
	}
}

// Load reads the document at path; an empty path gives Default.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("platform config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("platform config %s: %w", path, err)
	}
	if len(c.OCI.AllowedRegions) == 0 {
		c.OCI.AllowedRegions = slices.Clone(DefaultOCIRegions)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("platform config %s: %w", path, err)
	}
	return c, nil
}

var (
	iamRoleRe = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)
	ocidRe    = regexp.MustCompile(`^ocid1\.(tenancy|group|dynamicgroup)\.[a-z0-9]+\.[a-z0-9-]*\.[a-z0-9]+$`)
	guidRe    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Validate checks every identity's shape; all problems are reported.
func (c Config) Validate() error {
	var errs []error
	for region, arns := range c.AWS.Principals {
		for _, a := range arns {
			if !iamRoleRe.MatchString(a) {
				errs = append(errs, fmt.Errorf("aws.principals[%q]: %q is not an IAM role ARN", region, a))
			}
		}
	}
	if c.AWS.AssumeRoleARN != "" && !iamRoleRe.MatchString(c.AWS.AssumeRoleARN) {
		errs = append(errs, fmt.Errorf("aws.assume_role_arn: %q is not an IAM role ARN", c.AWS.AssumeRoleARN))
	}
	if c.OCI.TenancyOCID != "" && !ocidRe.MatchString(c.OCI.TenancyOCID) {
		errs = append(errs, fmt.Errorf("oci.tenancy_ocid: %q is not a tenancy OCID", c.OCI.TenancyOCID))
	}
	for region, g := range c.OCI.GroupsByRegion {
		if !ocidRe.MatchString(g) {
			errs = append(errs, fmt.Errorf("oci.groups_by_region[%q]: %q is not a group OCID", region, g))
		}
	}
	for _, id := range []struct{ name, v string }{{"azure.tenant_id", c.Azure.TenantID}, {"azure.principal_object_id", c.Azure.PrincipalObjectID}} {
		if id.v != "" && !guidRe.MatchString(id.v) {
			errs = append(errs, fmt.Errorf("%s: %q is not a GUID", id.name, id.v))
		}
	}
	return errors.Join(errs...)
}

// ErrRegionNotServed is matched by CheckRegion's error.
var ErrRegionNotServed = errors.New("region not served")

// CheckRegion refuses a key in a region the platform does not serve
// customers of that provider from.
func (c Config) CheckRegion(u kms.KeyURI) error {
	var allowed []string
	switch u.Scheme {
	case kms.SchemeOCI:
		allowed = c.OCI.AllowedRegions
	case kms.SchemeAWS:
		allowed = c.AWS.AllowedRegions
	}
	if len(allowed) == 0 || slices.Contains(allowed, u.Region) {
		return nil
	}
	return fmt.Errorf("%w: the platform serves %s keys from %s, not %s; use a key in one of those regions", ErrRegionNotServed,
		u.Scheme, strings.Join(allowed, ", "), u.Region)
}

// Identity is one platform identity that will use a customer key.
type Identity struct {
	Region string `json:"region,omitempty"`
	Kind   string `json:"kind"` // "iam_role", "oci_group", "entra_service_principal"
	ID     string `json:"id"`
}

// Identities lists who will use key u: what the tenant must grant.
func (c Config) Identities(u kms.KeyURI) []Identity {
	var out []Identity
	switch u.Scheme {
	case kms.SchemeAWS:
		arns := c.AWS.Principals[u.Region]
		if len(arns) == 0 {
			arns = c.AWS.Principals["*"]
		}
		for _, a := range arns {
			out = append(out, Identity{Region: u.Region, Kind: "iam_role", ID: a})
		}
	case kms.SchemeOCI:
		if g, ok := c.OCI.GroupsByRegion[u.Region]; ok {
			out = append(out, Identity{Region: u.Region, Kind: "oci_group", ID: g})
		}
	case kms.SchemeAzure:
		if c.Azure.PrincipalObjectID != "" {
			out = append(out, Identity{Kind: "entra_service_principal", ID: c.Azure.PrincipalObjectID})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
