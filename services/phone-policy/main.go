// Command phone-policy is the Keyward phone-policy worker: it answers phone
// systems' call admissions (record, record under fallback, don't record, or
// drop) from in-memory tenant settings and key statuses, and tells them what
// to do with live calls when a tenant's key goes away or comes back.
// Configuration: flags or environment (phone-policy -h); docs/phone-policy.md.
package main

import (
	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
)

func main() { svc.Exec("phone-policy", phonepolicy.Main) }
