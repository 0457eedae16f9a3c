package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/pkg/vault"
)

func (a *App) assetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "asset", Short: "Store assets and read them back"}
	cmd.AddCommand(a.assetPutCmd(), a.assetGetCmd())
	return cmd
}

func (a *App) assetPutCmd() *cobra.Command {
	var (
		tenantID, service, owner, id, origin, contentType string
		inlineLimit                                       int64
	)
	cmd := &cobra.Command{
		Use:   "put --tenant T [--service S] [--owner U] [--id ID] FILE",
		Short: "Stage a file (or - for stdin), publish AssetCreated and wait for the outcome",
		Long: `put stages FILE in KW_STAGING (small files travel inline in the event),
publishes AssetCreated on keyward.asset.created.<tenant> and waits for the
encryptor's outcome: the key the asset is encrypted under (customer, fallback or
platform), or why it was not stored. Exit status 3 when it was rejected.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			src, size, name, closeSrc, err := openInput(a.Stdin, args[0])
			if err != nil {
				return err
			}
			defer closeSrc()
			if id == "" {
				if name == "" {
					return usagef("--id is required when reading stdin")
				}
				id = name
			}
			if err := events.ValidateAssetID(id); err != nil {
				return usagef("asset id %q (from the file name; set --id): %v", id, err)
			}
			ctx, nc, js, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			p, err := producer.New(ctx, nc, js, producer.WithInlineLimit(inlineLimit))
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if size > inlineLimit && isTerminal(a.Stderr) {
				bar = newBar(a.Stderr, size, "staging "+id)
				src = io.TeeReader(src, bar)
			}
			pending, err := p.Put(ctx, producer.Asset{
				TenantID: tenantID, AssetID: id, Service: service, OwnerUserID: owner,
				Origin: events.Origin(origin), ContentType: contentType,
			}, src, size)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			out, err := pending.Wait(ctx)
			if err != nil {
				return err
			}
			return a.printOutcome(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenantID, "tenant", "", "tenant id (required)")
	f.StringVar(&service, "service", "cloud_recording", "service that produced the asset")
	f.StringVar(&owner, "owner", "cli-user", "owner user id")
	f.StringVar(&id, "id", "", "asset id (default: the file name)")
	f.StringVar(&origin, "origin", string(events.OriginCloud), "cloud or local_upload")
	f.StringVar(&contentType, "content-type", "", "MIME type, stored as metadata")
	f.Int64Var(&inlineLimit, "inline-limit", producer.DefaultInlineLimit, "largest file sent inline in the event; larger files are staged")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// errRejected makes `asset put` exit with status 3 after printing the
// rejection.
type rejectedError struct{ reason events.Reason }

func (e rejectedError) Error() string { return "asset not stored: " + string(e.reason) }

func (a *App) printOutcome(out *producer.Outcome) error {
	if a.jsonOut {
		if out.Encrypted != nil {
			return a.printJSON(out.Encrypted)
		}
		if err := a.printJSON(out.Rejected); err != nil {
			return err
		}
		return rejectedError{out.Rejected.Reason}
	}
	if e := out.Encrypted; e != nil {
		fmt.Fprintf(a.Stdout, "encrypted %s/%s\n", e.TenantID, e.AssetID)
		fmt.Fprintf(a.Stdout, "  mode        %s (%s)\n", e.Mode, e.Coverage)
		fmt.Fprintf(a.Stdout, "  key         %s\n", e.KeyURI)
		fmt.Fprintf(a.Stdout, "  stored as   %s/%s  (%d bytes of plaintext, %d of ciphertext)\n", e.Location.Bucket, e.Location.Object, e.Size, e.CiphertextSize)
		if e.PendingReencryption {
			fmt.Fprintf(a.Stdout, "  note        stored under the fallback key; it will be re-encrypted under the customer key when it is back\n")
		}
		return nil
	}
	r := out.Rejected
	fmt.Fprintf(a.Stdout, "rejected %s/%s: %s\n  %s\n", r.TenantID, r.AssetID, r.Reason, r.Detail)
	return rejectedError{r.Reason}
}

func (a *App) assetGetCmd() *cobra.Command {
	var (
		tenantID, rng, output, purpose string
	)
	cmd := &cobra.Command{
		Use:   "get --tenant T [--purpose P] [--range A-B] [-o FILE] ID",
		Short: "Read an asset back: fetch its ciphertext, get its key from the key broker, decrypt locally",
		Long: `get reads the asset's ciphertext from KW_VAULT, asks the key broker
(keyward.key.unwrap.<tenant>) for that one asset's key sealed to an ephemeral
HPKE key, and decrypts locally, fetching only the chunks needed.

It connects as a reader (the reader identity of keyward dev, or
--nats-creds), and the broker releases the key only for a --purpose the
reader's credential and the tenant allow (playback by default;
transcription, export, support, legal_hold).

--range takes HTTP byte-range syntax, inclusive: 0-99 (the first 100 bytes),
1000- (from byte 1000 to the end), -500 (the last 500 bytes).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			id := args[0]
			if err := events.ValidateAssetID(id); err != nil {
				return usagef("asset id: %v", err)
			}
			ctx, nc, js, done, err := a.sessionAs(cmd, IdentityReader)
			if err != nil {
				return err
			}
			defer done()
			store, err := vault.Open(ctx, js, events.BucketVault)
			if err != nil {
				return err
			}
			asset, err := keybroker.NewClient(nc, keybroker.WithPurpose(purpose)).Open(ctx, store, tenantID, id, cobblestone.WithConcurrency(0))
			if errors.Is(err, vault.ErrNotFound) {
				return fmt.Errorf("asset %s/%s is not in the vault (never stored, or rejected: see keyward status)", tenantID, id)
			}
			if err != nil {
				return err
			}
			size, err := asset.Size()
			if err != nil {
				return fmt.Errorf("asset %s/%s: %w", tenantID, id, err)
			}
			off, n, err := parseRange(rng, size)
			if err != nil {
				return usagef("--range: %v", err)
			}
			var dst io.Writer = a.Stdout
			if output != "" && output != "-" {
				f, err := os.OpenFile(output, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				dst = f
				if isTerminal(a.Stderr) && n > 1<<20 {
					bar := newBar(a.Stderr, n, "decrypting "+id)
					dst = io.MultiWriter(f, bar)
					defer bar.Finish()
				}
			}
			if _, err := io.Copy(dst, io.NewSectionReader(asset, off, n)); err != nil {
				return fmt.Errorf("asset %s/%s: %w", tenantID, id, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&purpose, "purpose", "playback", "why the key is needed: playback, transcription, export, support or legal_hold")
	f.StringVar(&tenantID, "tenant", "", "tenant id (required)")
	f.StringVar(&rng, "range", "", "byte range, e.g. 0-1023, 4096-, -512")
	f.StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// parseRange parses an inclusive HTTP-style byte range against size.
func parseRange(s string, size int64) (off, n int64, err error) {
	if s == "" {
		return 0, size, nil
	}
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not A-B, A- or -N", s)
	}
	switch {
	case first == "" && last == "":
		return 0, 0, fmt.Errorf("%q is not A-B, A- or -N", s)
	case first == "":
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k <= 0 {
			return 0, 0, fmt.Errorf("suffix length %q is not a positive number", last)
		}
		k = min(k, size)
		return size - k, k, nil
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, 0, fmt.Errorf("start %q is not a number", first)
	}
	if a >= size && size > 0 || (size == 0 && a > 0) {
		return 0, 0, fmt.Errorf("start %d is beyond the asset's %d bytes", a, size)
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, 0, fmt.Errorf("end %q is not a number at least %d", last, a)
		}
		b = min(b, size-1)
	}
	return a, b - a + 1, nil
}

func openInput(stdin io.Reader, arg string) (io.Reader, int64, string, func(), error) {
	if arg == "-" {
		return stdin, -1, "", func() {}, nil
	}
	f, err := os.Open(arg)
	if err != nil {
		return nil, 0, "", nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, "", nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, "", nil, fmt.Errorf("%s is a directory", arg)
	}
	return f, st.Size(), filepath.Base(arg), func() { f.Close() }, nil
}

func newBar(w io.Writer, total int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	)
}
