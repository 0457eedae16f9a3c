package awskms

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/keyward/keyward/pkg/kms"
)

// PolicyActions are the only KMS actions Keyward uses; a key policy granting
// these three is enough.
var PolicyActions = []string{"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}

// PolicyStatementSID is the Sid of the statement KeyPolicyStatement returns,
// so a tenant (or the enrollment CLI) can find it in the key policy.
const PolicyStatementSID = "AllowKeywardEnvelopeEncryption"

// PolicyParams are the inputs of KeyPolicyStatement.
type PolicyParams struct {
	// TenantID is the Keyward tenant the key belongs to
	// ([a-z0-9][a-z0-9-]{0,62}); only requests whose encryption context
	// names it are allowed.
	TenantID string
	// Principals are the IAM role ARNs the platform calls KMS with
	// (arn:aws:iam::<account>:role/<name>), at least one.
	Principals []string
}

var tenantIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate checks p, naming every problem at once.
func (p PolicyParams) Validate() error {
	var errs []error
	if !tenantIDRe.MatchString(p.TenantID) {
		errs = append(errs, fmt.Errorf("tenant id %q is invalid: use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit", p.TenantID))
	}
	if len(p.Principals) == 0 {
		errs = append(errs, errors.New("principals: at least one IAM role ARN is needed"))
	}
	seen := map[string]bool{}
	for i, arn := range p.Principals {
		switch {
		case !roleARNRe.MatchString(arn):
			errs = append(errs, fmt.Errorf("principals[%d] %q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", i, arn))
		case seen[arn]:
			errs = append(errs, fmt.Errorf("principals[%d] %q appears twice", i, arn))
		}
		seen[arn] = true
	}
	return errors.Join(errs...)
}

// policyStatement is the JSON shape of one key policy statement; the field
// order is the output order.
type policyStatement struct {
	Sid       string          `json:"Sid"`
	Effect    string          `json:"Effect"`
	Principal policyPrincipal `json:"Principal"`
	Action    []string        `json:"Action"`
	Resource  string          `json:"Resource"`
	Condition policyCondition `json:"Condition"`
}

type policyPrincipal struct {
	AWS []string `json:"AWS"`
}

type policyCondition struct {
	StringEquals          map[string]string   `json:"StringEquals"`
	ForAllValuesStringEqs map[string][]string `json:"ForAllValues:StringEquals"`
}

// KeyPolicyStatement returns the key-policy statement a tenant adds to the
// policy of their AWS KMS key to let Keyward use it, as indented JSON:
//
//   - Principal: the platform's IAM role ARNs (p.Principals);
//   - Action: exactly kms:Encrypt, kms:Decrypt and kms:GenerateDataKey;
//   - Resource "*" (in a key policy: this key);
//   - Condition: the encryption context must name the tenant
//     (StringEquals kms:EncryptionContext:keyward:tenant = p.TenantID), and
//     may hold no keys other than keyward:tenant and keyward:purpose
//     (ForAllValues:StringEquals kms:EncryptionContextKeys). ForAllValues
//     alone would also allow a request without any context; the
//     StringEquals condition requires the tenant key, so together they do
//     not.
func KeyPolicyStatement(p PolicyParams) (string, error) {
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("awskms: key policy statement: %w", err)
	}
	st := policyStatement{
		Sid:       PolicyStatementSID,
		Effect:    "Allow",
		Principal: policyPrincipal{AWS: append([]string(nil), p.Principals...)},
		Action:    append([]string(nil), PolicyActions...),
		Resource:  "*",
		Condition: policyCondition{
			StringEquals: map[string]string{
				"kms:EncryptionContext:" + kms.ContextKeyTenant: p.TenantID,
			},
			ForAllValuesStringEqs: map[string][]string{
				"kms:EncryptionContextKeys": {kms.ContextKeyTenant, kms.ContextKeyPurpose},
			},
		},
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", fmt.Errorf("awskms: key policy statement: %w", err)
	}
	return string(b), nil
}
