package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/ocikms"
	"github.com/keyward/keyward/pkg/platform"
)

// policyRequest is what `tenant key policy` needs to print one provider's
// grant.
type policyRequest struct {
	provider, tenantID, uri string
	compartment             string
	regions                 []string
	azureTenant, principal  string
	platformConfig          string
}

// keyPolicy is the printed grant.
type keyPolicy struct {
	Provider   string   `json:"provider"`
	TenantID   string   `json:"tenant_id"`
	KeyURI     string   `json:"key_uri,omitempty"`
	Operations []string `json:"operations"`
	// Policy is the text to add: a key policy statement (AWS), policy
	// statements (OCI), or the role definition and commands (Azure).
	Policy string `json:"policy"`
}

func (a *App) tenantKeyPolicyCmd() *cobra.Command {
	r := policyRequest{platformConfig: a.Getenv("KEYWARD_PLATFORM_CONFIG")}
	cmd := &cobra.Command{
		Use:   "policy --provider aws|oci|azure --tenant T [--uri KEY-URI]",
		Short: "Print the exact policy a customer must add so the platform can use their key",
		Long: `policy prints what the customer's key administrator adds so that the
platform's identities can use the key, and nothing more: the three
data-plane operations (OCI: Encrypt and Decrypt; Azure: wrapKey and
unwrapKey), bound to the tenant.

  aws    a key policy statement: kms:GenerateDataKey, kms:Encrypt and
         kms:Decrypt for the platform's IAM roles, on the condition that the
         encryption context names the tenant (keyward:tenant) and has no
         keys but keyward:tenant and keyward:purpose. With --uri, the roles of
         the key's region; without, every role of the platform.
  oci    policy statements admitting the platform's group of each region
         (from the platform config) to use key-family in the compartment,
         where the request is Encrypt or Decrypt. --compartment is required;
         the regions are the key's (--uri) or --regions, or every region the
         platform serves.
  azure  a custom role with only the wrapKey and unwrapKey data actions and
         its assignment to the platform's service principal, scoped to the key
         (--uri required), or the access-policy alternative. --azure-tenant is
         the customer's Entra tenant.

The platform's identities come from --platform-config
(KEYWARD_PLATFORM_CONFIG); without it, the identities of keyward dev.
No connection to NATS is needed.`,
		Example: `  keyward tenant key policy --provider aws --tenant acme --uri awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
  keyward tenant key policy --provider oci --tenant acme --compartment Security:Keys --regions us-ashburn-1,us-phoenix-1
  keyward tenant key policy --provider azure --tenant acme --azure-tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 --uri azurekv://acme.vault.azure.net/keys/keyward`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := r.build()
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(p)
			}
			fmt.Fprint(a.Stdout, p.Policy)
			if !strings.HasSuffix(p.Policy, "\n") {
				fmt.Fprintln(a.Stdout)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.provider, "provider", "", "aws, oci or azure (required; taken from --uri when given)")
	f.StringVar(&r.tenantID, "tenant", "", "tenant id the key belongs to (required)")
	f.StringVar(&r.uri, "uri", "", "the key being enrolled (azure: required)")
	f.StringVar(&r.compartment, "compartment", "", "oci: compartment of the key (name, Parent:Child path, compartment OCID, or tenancy OCID)")
	f.StringSliceVar(&r.regions, "regions", nil, "oci: regions to admit the platform from (default: the key's region, or every region served)")
	f.StringVar(&r.azureTenant, "azure-tenant", "", "azure: the customer's Microsoft Entra tenant ID")
	f.StringVar(&r.principal, "principal-object-id", "", "azure: object ID of the platform's service principal in the customer's tenant (default: from the platform config)")
	f.StringVar(&r.platformConfig, "platform-config", r.platformConfig, "platform config file (env KEYWARD_PLATFORM_CONFIG; default: keyward dev's identities)")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// build checks the flags and renders the grant.
func (r policyRequest) build() (*keyPolicy, error) {
	if err := events.ValidateTenantID(r.tenantID); err != nil {
		return nil, usagef("--tenant: %v", err)
	}
	var key kms.KeyURI
	if r.uri != "" {
		var err error
		if key, err = kms.ParseKeyURI(r.uri); err != nil {
			return nil, usagef("--uri: %v", err)
		}
		scheme := map[string]string{kms.SchemeAWS: "aws", kms.SchemeOCI: "oci", kms.SchemeAzure: "azure"}[key.Scheme]
		switch {
		case scheme == "":
			return nil, usagef("--uri: %s keys need no customer policy; give an awskms://, ocikms:// or azurekv:// key", key.Scheme)
		case r.provider == "":
			r.provider = scheme
		case r.provider != scheme:
			return nil, usagef("--provider %s does not match --uri, which is a %s key", r.provider, scheme)
		}
	}
	plat, err := platform.Load(r.platformConfig)
	if err != nil {
		return nil, usagef("--platform-config: %v", err)
	}
	out := &keyPolicy{Provider: r.provider, TenantID: r.tenantID, KeyURI: r.uri}
	switch r.provider {
	case "aws":
		out.Operations = slices.Clone(awskms.PolicyActions)
		var principals []string
		if r.uri != "" {
			for _, id := range plat.Identities(key) {
				principals = append(principals, id.ID)
			}
		} else {
			for _, arns := range plat.AWS.Principals {
				principals = append(principals, arns...)
			}
			slices.Sort(principals)
			principals = slices.Compact(principals)
		}
		if len(principals) == 0 {
			return nil, usagef("the platform config names no AWS principal for %s: add aws.principals", regionOr(key.Region, "any region"))
		}
		st, err := awskms.KeyPolicyStatement(awskms.PolicyParams{TenantID: r.tenantID, Principals: principals})
		if err != nil {
			return nil, err
		}
		out.Policy = st
	case "oci":
		if r.compartment == "" {
			return nil, usagef("--compartment is required for oci: the compartment that holds the key (name, Parent:Child path, or OCID)")
		}
		regions := r.regions
		if len(regions) == 0 && r.uri != "" {
			regions = []string{key.Region}
		}
		if len(regions) == 0 {
			regions = plat.OCI.AllowedRegions
		}
		for _, reg := range regions {
			if !slices.Contains(plat.OCI.AllowedRegions, reg) {
				return nil, usagef("region %s: the platform serves OCI keys from %s only", reg, strings.Join(plat.OCI.AllowedRegions, ", "))
			}
		}
		sts, err := ocikms.PolicyStatements(ocikms.PolicyParams{
			PlatformTenancyOCID: plat.OCI.TenancyOCID, GroupsByRegion: plat.OCI.GroupsByRegion,
			Compartment: r.compartment, Regions: regions,
		})
		if err != nil {
			return nil, usagef("%v (check --compartment, --regions and the platform config's oci section)", err)
		}
		out.Operations = []string{"Encrypt", "Decrypt"}
		out.Policy = strings.Join(sts, "\n") + "\n"
	case "azure":
		if r.uri == "" {
			return nil, usagef("--uri is required for azure: the grant is scoped to one key (azurekv://<vault>.vault.azure.net/keys/<name>)")
		}
		if r.azureTenant == "" {
			return nil, usagef("--azure-tenant is required for azure: the customer's Microsoft Entra tenant ID (a GUID)")
		}
		principal := r.principal
		if principal == "" {
			principal = plat.Azure.PrincipalObjectID
		}
		text, err := azurekv.AccessInstructions(azurekv.AccessParams{PrincipalObjectID: principal, TenantID: r.azureTenant, KeyURI: r.uri})
		if err != nil {
			return nil, usagef("%v (check --azure-tenant, --principal-object-id and --uri)", err)
		}
		out.Operations = []string{"wrapKey", "unwrapKey"}
		out.Policy = text
	case "":
		return nil, usagef("--provider is required: aws, oci or azure (or give --uri)")
	default:
		return nil, usagef("--provider %q: use aws, oci or azure", r.provider)
	}
	return out, nil
}

func regionOr(region, dflt string) string {
	if region == "" {
		return dflt
	}
	return region
}
