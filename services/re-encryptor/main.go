// Command re-encryptor is the Keyward re-encryptor: it keeps its own bbolt
// ledger projected from KW_ASSETS and runs the jobs that move a tenant's
// assets between keys — heal (fallback copies re-encrypted under the customer
// key once it is back), rotation (seeds rewrapped from a retiring key to the
// new primary) and deprovisioning (everything rewrapped to the platform key
// at the scheduled date). Jobs are JetStream-backed (KV KW_REENCRYPT_JOBS)
// and resume where they stopped. Configuration: flags or environment
// (re-encryptor -h); docs/reencryption.md.
package main

import (
	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

func main() { svc.Exec("re-encryptor", reencryptor.Main) }
