package ocikms

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// PolicyParams describes the cross-tenancy policy a tenant adds so that
// Keyward may use their keys.
type PolicyParams struct {
	// PlatformTenancyOCID is Keyward's own tenancy (ocid1.tenancy.oc1..<id>).
	PlatformTenancyOCID string
	// GroupsByRegion maps each region to the OCID of the Keyward group
	// (in the platform's tenancy) whose principals call OCI Vault from
	// that region.
	GroupsByRegion map[string]string
	// Compartment holds the tenant's keys: a compartment name, a path of
	// names from the root (Security:Keys), a compartment OCID, or the
	// tenancy OCID for the whole tenancy.
	Compartment string
	// Regions lists the regions to admit Keyward's groups from, in order.
	Regions []string
}

// Policy aliases: the platform's tenancy, and its group of each region.
const (
	policyTenancyAlias = "keyward"
	policyGroupPrefix  = "keyward-"
)

// policyOperations are the only operations the policy admits, as OCI names
// them in request.operation. The provider makes data keys with crypto/rand
// and wraps them with Encrypt (GenerateDataEncryptionKey's response carries
// no key version), so GenerateDataEncryptionKey is not needed: least privilege.
var policyOperations = []string{opOCIEncrypt, opOCIDecrypt}

var (
	groupOCIDRe       = regexp.MustCompile(`^ocid1\.group\.oc[0-9]{1,3}\.[a-z0-9-]*\.[a-z0-9]{1,128}$`)
	compartmentOCIDRe = regexp.MustCompile(`^ocid1\.compartment\.oc[0-9]{1,3}\.[a-z0-9-]*\.[a-z0-9]{1,128}$`)
	compartmentPathRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}(:[A-Za-z0-9._-]{1,100}){0,5}$`)
)

// PolicyStatements returns the OCI IAM policy statements a tenant adds to a
// policy in the root compartment of their tenancy (cross-tenancy statements
// must be in the root compartment, and each Define in the same policy as
// the Admit that uses it), in this order:
//
//	Define tenancy keyward as <PlatformTenancyOCID>
//	Define group keyward-<region> as <group OCID>                  (one per region)
//	Admit group keyward-<region> of tenancy keyward to use key-family in compartment <c>
//	    where any {request.operation='Encrypt', request.operation='Decrypt', request.operation='GenerateDataEncryptionKey'}
//
// (each Admit on one line). The location is "compartment <name or path>",
// "compartment id <OCID>", or "tenancy" for a tenancy OCID. The statements
// admit nothing but the three cryptographic operations on keys; Keyward's
// own tenancy holds the matching Endorse statements. Every problem with p is
// reported, joined, in one error.
func PolicyStatements(p PolicyParams) ([]string, error) {
	var errs []error
	if !tenancyRe.MatchString(p.PlatformTenancyOCID) {
		errs = append(errs, errors.New("PlatformTenancyOCID is not a tenancy OCID (ocid1.tenancy.oc1..<id>)"))
	}
	location, err := policyLocation(p.Compartment)
	if err != nil {
		errs = append(errs, err)
	}
	if len(p.Regions) == 0 {
		errs = append(errs, errors.New("Regions is empty: name at least one region"))
	}
	seen := map[string]bool{}
	for _, r := range p.Regions {
		if !ociRegionRe.MatchString(r) {
			errs = append(errs, fmt.Errorf("region %q is not an OCI region name (e.g. us-ashburn-1)", r))
			continue
		}
		if seen[r] {
			errs = append(errs, fmt.Errorf("region %s is listed twice", r))
			continue
		}
		seen[r] = true
		g, ok := p.GroupsByRegion[r]
		switch {
		case !ok || g == "":
			errs = append(errs, fmt.Errorf("GroupsByRegion has no group for region %s", r))
		case !groupOCIDRe.MatchString(g):
			errs = append(errs, fmt.Errorf("group of region %s is not a group OCID (ocid1.group.oc1..<id>)", r))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("ocikms: policy: %w", errors.Join(errs...))
	}

	ops := make([]string, len(policyOperations))
	for i, op := range policyOperations {
		ops[i] = fmt.Sprintf("request.operation='%s'", op)
	}
	cond := "where any {" + strings.Join(ops, ", ") + "}"
	out := make([]string, 0, 1+2*len(p.Regions))
	out = append(out, fmt.Sprintf("Define tenancy %s as %s", policyTenancyAlias, p.PlatformTenancyOCID))
	for _, r := range p.Regions {
		out = append(out, fmt.Sprintf("Define group %s%s as %s", policyGroupPrefix, r, p.GroupsByRegion[r]))
	}
	for _, r := range p.Regions {
		out = append(out, fmt.Sprintf("Admit group %s%s of tenancy %s to use key-family in %s %s",
			policyGroupPrefix, r, policyTenancyAlias, location, cond))
	}
	return out, nil
}

// policyLocation returns the <location> of a policy statement for c.
func policyLocation(c string) (string, error) {
	switch {
	case c == "":
		return "", errors.New("Compartment is empty: name the compartment that holds the keys (name, path or OCID)")
	case tenancyRe.MatchString(c):
		return "tenancy", nil
	case compartmentOCIDRe.MatchString(c):
		return "compartment id " + c, nil
	case strings.HasPrefix(c, "ocid1."):
		return "", errors.New("Compartment looks like an OCID but not a compartment or tenancy OCID")
	case compartmentPathRe.MatchString(c):
		return "compartment " + c, nil
	}
	return "", fmt.Errorf("Compartment %q is not a compartment name (letters, digits, '.', '_', '-'), a path of names separated by ':', or an OCID", c)
}
