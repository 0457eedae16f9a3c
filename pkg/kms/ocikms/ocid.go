package ocikms

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/keyward/keyward/pkg/kms"
)

// ErrInvalidKeyOCID is matched (errors.Is) by every error of ValidateKeyOCID.
var ErrInvalidKeyOCID = errors.New("invalid OCI key OCID")

// maxOCIDLen bounds a key OCID (OCI documents OCIDs of up to 255 characters).
const maxOCIDLen = 255

// The parts of a key OCID: ocid1.key.<realm>.<region>.<vault>.<id>.
var (
	realmRe  = regexp.MustCompile(`^oc[0-9]{1,3}$`)
	regionRe = regexp.MustCompile(`^([a-z]{3}|[a-z]{2,12}-[a-z]{1,20}-[0-9]{1,2})$`)
	partRe   = regexp.MustCompile(`^[a-z0-9]+$`)
)

// ValidateKeyOCID checks that s has the shape of an OCI Vault key OCID,
//
//	ocid1.key.<realm>.<region>.<vault>.<unique id>
//
// e.g. ocid1.key.oc1.iad.bbpr4ltnaaeuk.abuwcljrs6fmbuuxq4zsxd6rwb3ug4zhqmw6tkfgaq2bbtslhbwzbn3kgqza:
// the realm is oc followed by digits (oc1 is the commercial realm), the region
// is the region's three-letter key (iad) or its name (us-ashburn-1), the vault
// part and the unique id are lowercase letters and digits (at most 64 and 128
// characters). It does not tell whether the key exists. Errors match
// ErrInvalidKeyOCID and say which part is wrong; they quote at most the
// offending part, which is never secret.
func ValidateKeyOCID(s string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s (key OCIDs look like ocid1.key.oc1.<region>.<vault>.<id>)", ErrInvalidKeyOCID, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("it is empty")
	}
	if len(s) > maxOCIDLen {
		return fail("it is %d characters long, at most %d allowed", len(s), maxOCIDLen)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 6 {
		return fail("it has %d dot-separated parts, want 6", len(parts))
	}
	switch {
	case parts[0] != "ocid1":
		return fail("it does not start with ocid1")
	case parts[1] != "key":
		return fail("resource type %s is not key", quotePart(parts[1]))
	case !realmRe.MatchString(parts[2]):
		return fail("realm %s is not oc<digits>", quotePart(parts[2]))
	case !regionRe.MatchString(parts[3]):
		return fail("region %s is neither a region key (iad) nor a region name (us-ashburn-1)", quotePart(parts[3]))
	case len(parts[4]) == 0 || len(parts[4]) > 64 || !partRe.MatchString(parts[4]):
		return fail("vault part %s is not 1-64 lowercase letters and digits", quotePart(parts[4]))
	case len(parts[5]) == 0 || len(parts[5]) > 128 || !partRe.MatchString(parts[5]):
		return fail("unique id %s is not 1-128 lowercase letters and digits", quotePart(parts[5]))
	}
	return nil
}

// quotePart quotes an OCID part for an error message, shortened.
func quotePart(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// defaultAllowedRegions are the OCI regions the platform serves OCI customers
// from unless WithAllowedRegions says otherwise.
var defaultAllowedRegions = []string{"us-ashburn-1", "us-phoenix-1", "us-sanjose-1", "eu-amsterdam-1"}

// DefaultAllowedRegions returns the OCI regions Keyward serves OCI customers
// from by default: us-ashburn-1, us-phoenix-1, us-sanjose-1, eu-amsterdam-1.
// It returns a new slice on every call.
func DefaultAllowedRegions() []string { return slices.Clone(defaultAllowedRegions) }

// ociRegionRe is the shape of an OCI region name (as kms.ParseKeyURI accepts it).
var ociRegionRe = regexp.MustCompile(`^[a-z]{2,}-[a-z]+-[0-9]{1,2}$`)

// CheckRegion reports whether the key u is in a region the platform serves
// OCI customers from: allowed, or DefaultAllowedRegions() when allowed is
// empty. The enrollment CLI calls it before a key is enrolled; the Provider
// calls it before every request, so a key in another region fails without
// any request being sent.
//
// The error is a *kms.Error with kms.CodeInvalidArgument whose message names
// the key's region and the allowed ones.
func CheckRegion(u kms.KeyURI, allowed []string) error {
	if len(allowed) == 0 {
		allowed = defaultAllowedRegions
	}
	fail := func(format string, args ...any) error {
		return &kms.Error{Code: kms.CodeInvalidArgument, Provider: kms.SchemeOCI, Key: keyString(u), Err: fmt.Errorf(format, args...)}
	}
	switch {
	case u.Scheme != kms.SchemeOCI:
		return fail("ocikms cannot use a %q key URI", u.Scheme)
	case u.Region == "":
		return fail("the key URI names no OCI region: use the vault's oraclecloud.com crypto endpoint or add ?region=<region>")
	case !slices.Contains(allowed, u.Region):
		return fail("OCI region %s is not one Keyward serves OCI customers from (allowed: %s): enroll a key in an allowed region, or have the platform add %s to its allowlist",
			u.Region, strings.Join(allowed, ", "), u.Region)
	}
	return nil
}

// keyString is the canonical form of u, or "" for a zero KeyURI.
func keyString(u kms.KeyURI) string {
	if u.IsZero() {
		return ""
	}
	return u.String()
}
