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
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

func main() {
	svc.TuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := reencryptor.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "re-encryptor:", err)
		if errors.Is(err, svc.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
