// Command encryptor is the Keyward encryptor worker: AssetCreated in,
// ciphertext in KW_VAULT and AssetEncrypted / AssetRejected out, plus the key
// broker. Configuration: flags or environment (encryptor -h).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/encryptor/encryptor"
)

func main() {
	svc.TuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := encryptor.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "encryptor:", err)
		if errors.Is(err, svc.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
