// Package cli is the keyward command: the operator's and developer's tool.
// `keyward dev` runs the whole system in one process; the other commands
// talk to any Keyward deployment through NATS (NATS_URL).
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/devtls"
	"github.com/keyward/keyward/pkg/svc"
)

// redactURL drops userinfo (a password) from a NATS URL list before it is
// printed.
func redactURL(s string) string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil && p.User != nil {
			p.User = url.User("redacted")
			u = p.String()
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

// App holds what every command shares.
type App struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string

	natsURL   string
	natsCreds string
	natsCA    string
	credsDir  string
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
	pf.StringVar(&a.natsCreds, "nats-creds", a.Getenv("NATS_CREDS"), "NATS credentials file (env NATS_CREDS); default: the command's identity in --creds-dir")
	pf.StringVar(&a.natsCA, "nats-ca", a.Getenv("NATS_CA"), "CA certificate file (PEM) that signed the NATS server's certificate; implies TLS (env NATS_CA); default: the CA of `keyward dev --tls`, <creds-dir>/../tls/ca.pem, if it exists, trusted when the server requires TLS")
	pf.StringVar(&a.credsDir, "creds-dir", envOr(a.Getenv, "KEYWARD_CREDS_DIR", ".keyward/creds"), "where `keyward dev` wrote its credentials: without --nats-creds a command uses <dir>/<identity>.creds if it exists (operator; reader for asset get) (env KEYWARD_CREDS_DIR)")
	pf.DurationVar(&a.timeout, "timeout", 60*time.Second, "how long to wait for an answer")
	pf.BoolVar(&a.jsonOut, "json", false, "print machine-readable JSON")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.devCmd(), a.accessCmd(), a.provisionCmd(), a.assetCmd(), a.tenantCmd(), a.statusCmd(), a.dlqCmd(), a.reencryptCmd(), a.benchCmd())
	return root
}

// connect opens a NATS connection for a command, as the operator.
func (a *App) connect() (*nats.Conn, jetstream.JetStream, error) {
	return a.connectAs(IdentityOperator)
}

// credsFor is the credentials file a command needing identity uses:
// --nats-creds / NATS_CREDS when given, else <creds-dir>/<identity>.creds
// when it exists (keyward dev writes them), else none.
func (a *App) credsFor(identity string) string {
	if a.natsCreds != "" {
		return a.natsCreds
	}
	if a.credsDir == "" {
		return ""
	}
	path := access.CredsPath(a.credsDir, identity)
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// devCAFile is where `keyward dev --tls` writes its CA: the tls directory
// beside the creds dir, both in the data dir (.keyward/tls/ca.pem).
func devCAFile(credsDir string) string {
	return filepath.Join(filepath.Dir(credsDir), "tls", devtls.CAFile)
}

// tlsOptions are the TLS options of a command's connection. With
// --nats-ca / NATS_CA the connection requires TLS and trusts only that CA.
// Without, the CA `keyward dev --tls` wrote next to the creds dir is
// trusted if it exists, but TLS is used only when the server requires it
// (a plaintext `keyward dev` run after a --tls one still works).
func (a *App) tlsOptions() ([]nats.Option, error) {
	if a.natsCA != "" {
		pool, err := loadCAPool(a.natsCA)
		if err != nil {
			return nil, usageError{fmt.Errorf("--nats-ca: %w", err)}
		}
		return []nats.Option{nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})}, nil
	}
	if a.credsDir == "" {
		return nil, nil
	}
	path := devCAFile(a.credsDir)
	if _, err := os.Stat(path); err != nil {
		return nil, nil
	}
	pool, err := loadCAPool(path)
	if err != nil {
		return nil, fmt.Errorf("the CA of keyward dev --tls: %w", err)
	}
	return []nats.Option{func(o *nats.Options) error {
		o.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		return nil
	}}, nil
}

func loadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in the file", path)
	}
	return pool, nil
}

// connectAs opens a NATS connection for a command that needs identity's
// permissions (an operator's by default; a reader's to read content).
func (a *App) connectAs(identity string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("keyward-cli"), nats.Timeout(5 * time.Second)}
	creds := a.credsFor(identity)
	copts, err := access.ClientOptions(creds)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--nats-creds: %w", err)}
	}
	topts, err := a.tlsOptions()
	if err != nil {
		return nil, nil, err
	}
	opts = append(append(opts, topts...), copts...)
	nc, err := nats.Connect(a.natsURL, opts...)
	if err != nil {
		hint := "is `keyward dev` running? set NATS_URL or --nats-url"
		switch {
		case errors.Is(err, nats.ErrTLS):
			hint = "the server's TLS certificate is not trusted: pass --nats-ca (or NATS_CA) with the CA that signed it; `keyward dev --tls` writes .keyward/tls/ca.pem"
		case errors.Is(err, nats.ErrSecureConnWanted):
			hint = "--nats-ca (NATS_CA) requires TLS, but the server does not offer it"
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			hint = "the server refused the credentials: pass --nats-creds (or NATS_CREDS) with a current credential; `keyward dev` writes them to .keyward/creds"
			if creds == "" {
				hint = "the server requires credentials: pass --nats-creds (or NATS_CREDS), or run from the directory of `keyward dev` (.keyward/creds)"
			}
		}
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w (%s)", redactURL(a.natsURL), err, hint)
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
	return a.sessionAs(cmd, IdentityOperator)
}

// sessionAs is session with identity's credentials (connectAs).
func (a *App) sessionAs(cmd *cobra.Command, identity string) (ctx context.Context, nc *nats.Conn, js jetstream.JetStream, done func(), err error) {
	nc, js, err = a.connectAs(identity)
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
