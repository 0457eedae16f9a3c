// Command notifier is the Keyward notifier: it emails each tenant's
// recipients every status change of their keys and every lifecycle event
// (enrollment, rotation, deprovisioning, re-encryption, content not stored),
// once per event and recipient, with digests against floods.
// Configuration: flags or environment (notifier -h); docs/notifier.md.
package main

import (
	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/notifier/notifier"
)

func main() { svc.Exec("notifier", notifier.Main) }
