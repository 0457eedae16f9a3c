// Package cli is the keyward command: the operator's and developer's tool.
// `keyward dev` runs the whole system in one process; the other commands
// talk to any Keyward deployment through NATS (NATS_URL).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyward/keyward/pkg/svc"
)

// App holds what every command shares.
type App struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string

	natsURL   string
	natsCreds string
	timeout   time.Duration
	jsonOut   bool
}

// Main runs the keyward command with args and returns the exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &App{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv}
	root := a.Root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var re rejectedError
		if !errors.As(err, &re) {
			fmt.Fprintln(stderr, "keyward:", err)
		}
		var ue usageError
		switch {
		case errors.As(err, &ue):
			return 2
		case errors.As(err, &re):
			return 3
		}
		return 1
	}
	return 0
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Root builds the command tree.
func (a *App) Root() *cobra.Command {
	root := &cobra.Command{
		Use:   "keyward",
		Short: "Customer-managed keys for every stored asset, on NATS JetStream",
		Long: `keyward runs and operates Keyward: assets encrypted under each tenant's own
key in AWS KMS, OCI Vault or Azure Key Vault, with a fallback key or a safe
refusal when that key is unreachable.

  keyward dev                 run everything locally (embedded NATS, no cloud account)
  keyward asset put|get       store an asset and read it back
  keyward tenant apply|show   configure tenants
  keyward status              streams, consumers, backlogs, dead letters
  keyward dlq list|redrive    inspect and redrive dead letters

Every command except dev talks to the NATS server in NATS_URL.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       svc.Version,
	}
	def := a.Getenv("NATS_URL")
	if def == "" {
		def = nats.DefaultURL
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.natsURL, "nats-url", def, "NATS server URL (env NATS_URL)")
	pf.StringVar(&a.natsCreds, "nats-creds", a.Getenv("NATS_CREDS"), "NATS credentials file (env NATS_CREDS)")
	pf.DurationVar(&a.timeout, "timeout", 60*time.Second, "how long to wait for an answer")
	pf.BoolVar(&a.jsonOut, "json", false, "print machine-readable JSON")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.devCmd(), a.assetCmd(), a.tenantCmd(), a.statusCmd(), a.dlqCmd(), a.reencryptCmd(), a.benchCmd())
	return root
}

// connect opens a NATS connection for a command.
func (a *App) connect() (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("keyward-cli"), nats.Timeout(5 * time.Second)}
	if a.natsCreds != "" {
		opts = append(opts, nats.UserCredentials(a.natsCreds))
	}
	nc, err := nats.Connect(a.natsURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w (is `keyward dev` running? set NATS_URL or --nats-url)", a.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// session connects to NATS and bounds the command by --timeout. Call done
// when the command is finished.
func (a *App) session(cmd *cobra.Command) (ctx context.Context, nc *nats.Conn, js jetstream.JetStream, done func(), err error) {
	nc, js, err = a.connect()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	return ctx, nc, js, func() { cancel(); nc.Close() }, nil
}

func (a *App) printJSON(v any) error {
	enc := json.NewEncoder(a.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
