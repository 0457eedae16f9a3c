package azurekv

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/keyward/keyward/pkg/kms"
)

// Azure data actions Keyward needs, and nothing more.
const (
	// DataActionWrap and DataActionUnwrap are the Azure RBAC data actions
	// for a key in a Key Vault.
	DataActionWrap   = "Microsoft.KeyVault/vaults/keys/wrap/action"
	DataActionUnwrap = "Microsoft.KeyVault/vaults/keys/unwrap/action"
	// HSMDataActionWrap and HSMDataActionUnwrap are the Managed HSM local
	// RBAC data actions for a key in a Managed HSM.
	HSMDataActionWrap   = "Microsoft.KeyVault/managedHsm/keys/wrap/action"
	HSMDataActionUnwrap = "Microsoft.KeyVault/managedHsm/keys/unwrap/action"
	// RoleName is the name of the custom role AccessInstructions defines.
	RoleName = "Keyward Key Wrap"
)

// AccessParams names who must be granted what: Keyward's service principal
// in the customer's tenant, and the customer's key.
type AccessParams struct {
	// PrincipalObjectID is the object ID of Keyward's service principal (or
	// managed identity) in the customer's tenant — not the application
	// (client) ID.
	PrincipalObjectID string
	// TenantID is the customer's Microsoft Entra tenant, where the vault is.
	TenantID string
	// KeyURI is the key being enrolled: azurekv://<vault>/keys/<name>.
	KeyURI string
}

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// AccessInstructions returns what the customer must run to let Keyward use
// their key, and nothing more: wrapKey and unwrapKey on that one key.
//
// For a Key Vault (*.vault.azure.net) it prints a custom Azure RBAC role
// whose dataActions are exactly DataActionWrap and DataActionUnwrap (JSON
// for `az role definition create`), the `az role assignment create` command
// scoped to the key, and, for vaults still on the access policy permission
// model, the `az keyvault set-policy --key-permissions wrapKey unwrapKey`
// alternative (which applies to every key in the vault). For a Managed HSM
// (*.managedhsm.azure.net) it prints the local RBAC equivalent: a custom
// role with HSMDataActionWrap and HSMDataActionUnwrap and an assignment
// scoped to /keys/<name>.
//
// Errors name the parameter that is wrong. The output is deterministic
// (golden-tested); every value interpolated into a command is validated
// (GUIDs, vault and key names) so it is safe to paste into a shell.
func AccessInstructions(p AccessParams) (string, error) {
	var problems []error
	if !guidRe.MatchString(p.PrincipalObjectID) {
		problems = append(problems, errors.New("PrincipalObjectID must be the object ID (a GUID) of Keyward's service principal in the customer's tenant"))
	}
	if !guidRe.MatchString(p.TenantID) {
		problems = append(problems, errors.New("TenantID must be the customer's Microsoft Entra tenant ID (a GUID)"))
	}
	key, err := kms.ParseKeyURI(p.KeyURI)
	switch {
	case err != nil:
		problems = append(problems, fmt.Errorf("KeyURI: %w", err))
	case key.Scheme != kms.SchemeAzure:
		problems = append(problems, fmt.Errorf("KeyURI: scheme %q is not %s", key.Scheme, kms.SchemeAzure))
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("azurekv: access instructions: %w", errors.Join(problems...))
	}
	oid, tenant := strings.ToLower(p.PrincipalObjectID), strings.ToLower(p.TenantID)
	vaultName, _, _ := strings.Cut(key.Vault, ".")
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	kind := "Key Vault"
	if IsManagedHSM(key.Vault) {
		kind = "Managed HSM"
	}
	w("Grant Keyward the use of %s key %q in %s (%s), for wrapKey and unwrapKey only.\n", kind, key.KeyID, key.Vault, vaultName)
	w("Keyward's service principal: object ID %s.\n", oid)
	w("Keyward never reads, creates, rotates or deletes keys: no other permission is needed.\n")
	w("Run the commands below with the Azure CLI as an administrator of tenant %s:\n\n", tenant)
	if c := cloudName(key.Vault); c != "" {
		w("  az cloud set --name %s\n", c)
	}
	w("  az login --tenant %s\n\n", tenant)

	if IsManagedHSM(key.Vault) {
		w("1. Create a custom role with exactly these two data actions (once per Managed HSM;\n")
		w("   skip if the role %q exists already):\n\n", RoleName)
		w("  az keyvault role definition create --hsm-name %s --role-definition '{\n", vaultName)
		w("    \"roleName\": %q,\n", RoleName)
		w("    \"description\": \"Wrap and unwrap with Managed HSM keys; nothing else. For Keyward.\",\n")
		w("    \"actions\": [],\n")
		w("    \"notActions\": [],\n")
		w("    \"dataActions\": [\n")
		w("      %q,\n", HSMDataActionWrap)
		w("      %q\n", HSMDataActionUnwrap)
		w("    ],\n")
		w("    \"notDataActions\": []\n")
		w("  }'\n\n")
		w("2. Assign it to Keyward, scoped to this one key:\n\n")
		w("  az keyvault role assignment create --hsm-name %s \\\n", vaultName)
		w("    --role %q \\\n", RoleName)
		w("    --assignee-object-id %s \\\n", oid)
		w("    --assignee-principal-type ServicePrincipal \\\n")
		w("    --scope /keys/%s\n", key.KeyID)
		return b.String(), nil
	}

	w("Option A: Azure RBAC (vaults using the Azure role-based access control permission model)\n\n")
	w("1. Save this custom role definition as keyward-key-wrap.json, replacing <subscription-id>\n")
	w("   with the subscription that holds the vault (once per subscription; skip if the role\n")
	w("   %q exists already):\n\n", RoleName)
	w("{\n")
	w("  \"Name\": %q,\n", RoleName)
	w("  \"IsCustom\": true,\n")
	w("  \"Description\": \"Wrap and unwrap with Key Vault keys; nothing else. For Keyward.\",\n")
	w("  \"Actions\": [],\n")
	w("  \"NotActions\": [],\n")
	w("  \"DataActions\": [\n")
	w("    %q,\n", DataActionWrap)
	w("    %q\n", DataActionUnwrap)
	w("  ],\n")
	w("  \"NotDataActions\": [],\n")
	w("  \"AssignableScopes\": [\"/subscriptions/<subscription-id>\"]\n")
	w("}\n\n")
	w("  az role definition create --role-definition @keyward-key-wrap.json\n\n")
	w("2. Assign it to Keyward, scoped to this one key:\n\n")
	w("  az role assignment create \\\n")
	w("    --role %q \\\n", RoleName)
	w("    --assignee-object-id %s \\\n", oid)
	w("    --assignee-principal-type ServicePrincipal \\\n")
	w("    --scope \"$(az keyvault show --name %s --query id --output tsv)/keys/%s\"\n\n", vaultName, key.KeyID)
	w("Option B: vault access policy (vaults using the access policy permission model).\n")
	w("An access policy applies to every key in the vault, not just %q:\n\n", key.KeyID)
	w("  az keyvault set-policy --name %s \\\n", vaultName)
	w("    --object-id %s \\\n", oid)
	w("    --key-permissions wrapKey unwrapKey\n")
	return b.String(), nil
}

// cloudName is the Azure CLI cloud of a sovereign vault host ("" for the
// public cloud).
func cloudName(host string) string {
	switch {
	case strings.HasSuffix(host, ".azure.cn"):
		return "AzureChinaCloud"
	case strings.HasSuffix(host, ".usgovcloudapi.net"):
		return "AzureUSGovernment"
	}
	return ""
}
