package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/vault"
)

// TestKeyReleaseIsAuthorized: on keyward dev (authentication on), the key
// broker releases an asset's key only to a reader within its services and
// purposes, for a purpose the tenant does not deny; it knows the caller
// from NATS, not from anything the client sends; every release and
// refusal is recorded on KW_AUDIT with the caller's identity.
func TestKeyReleaseIsAuthorized(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// One stored asset of the demo tenant, service cloud_recording.
	prodNC, prodJS := as(t, d, cli.IdentityProducer)
	prod, err := producer.New(ctx, prodNC, prodJS)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("the board meeting, recorded")
	p, err := prod.Put(ctx, producer.Asset{TenantID: cli.DemoTenant, AssetID: "rec-1", Service: "cloud_recording", OwnerUserID: "u-1"}, bytes.NewReader(want), int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.Wait(ctx); err != nil || out.Encrypted == nil {
		t.Fatalf("asset not stored: %+v, %v", out, err)
	}

	issue := func(id access.Identity) *nats.Conn {
		t.Helper()
		paths, err := d.Auth.EnsureCreds(t.TempDir(), []access.Identity{id})
		if err != nil {
			t.Fatal(err)
		}
		opts, err := access.ClientOptions(paths[id.Name])
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(d.URL(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	_, opJS := as(t, d, cli.IdentityOperator)
	store, err := vault.Open(ctx, opJS, events.BucketVault)
	if err != nil {
		t.Fatal(err)
	}
	read := func(nc *nats.Conn, purpose string) ([]byte, string) {
		t.Helper()
		c := keybroker.NewClient(nc, keybroker.WithRetries(0), keybroker.WithTimeout(5*time.Second), keybroker.WithPurpose(purpose))
		a, err := c.Open(ctx, store, cli.DemoTenant, "rec-1", cobblestone.WithConcurrency(0))
		if err != nil {
			var be *keybroker.Error
			if errors.As(err, &be) {
				return nil, be.Code
			}
			t.Fatalf("reading with purpose %q: %v", purpose, err)
		}
		size, err := a.Size()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(a, 0, size))
		if err != nil {
			t.Fatal(err)
		}
		return got, ""
	}

	viewer := issue(access.Identity{Name: "viewer", Role: access.RoleReader, Services: []string{"cloud_recording"}, Purposes: []string{"playback", "support"}})
	chatBot := issue(access.Identity{Name: "chat-bot", Role: access.RoleReader, Services: []string{"team_chat"}, Purposes: []string{"*"}})
	if got, code := read(viewer, "playback"); code != "" || !bytes.Equal(got, want) {
		t.Fatalf("viewer, playback: %q, %q; want the plaintext", got, code)
	}
	if _, code := read(viewer, "transcription"); code != keybroker.CodeNotAuthorized {
		t.Errorf("viewer, transcription (not in its purposes): %q, want %s", code, keybroker.CodeNotAuthorized)
	}
	if _, code := read(chatBot, "playback"); code != keybroker.CodeNotAuthorized {
		t.Errorf("chat-bot (team_chat only) reading a cloud recording: %q, want %s", code, keybroker.CodeNotAuthorized)
	}
	if _, code := read(viewer, "curiosity"); code != keybroker.CodeInvalidRequest {
		t.Errorf("an unknown purpose: %q, want %s", code, keybroker.CodeInvalidRequest)
	}
	if _, code := read(viewer, ""); code != keybroker.CodeInvalidRequest {
		t.Errorf("no purpose: %q, want %s", code, keybroker.CodeInvalidRequest)
	}

	// The tenant denies support: its setting wins over the reader's grant.
	_, adminJS := as(t, d, "admin") // tenant writes are the admin service's
	tenants, err := tenant.OpenStore(ctx, adminJS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	if got, code := read(viewer, "support"); code != "" || !bytes.Equal(got, want) {
		t.Fatalf("viewer, support before the tenant denies it: %q, %q", got, code)
	}
	if _, err := tenants.Modify(ctx, cli.DemoTenant, func(c *tenant.Config) error {
		c.DeniedPurposes = []string{"support"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, code := read(viewer, "support")
		if code == keybroker.CodePurposeDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("viewer, support after the tenant denied it: %q, want %s", code, keybroker.CodePurposeDenied)
		}
		time.Sleep(20 * time.Millisecond) // the encryptor's tenant cache follows KW_TENANTS
	}

	// A forged Nats-Request-Info is replaced by the server: the broker
	// sees the real caller (chat-bot), not the claimed one.
	forged := nats.NewMsg(events.SubjectKeyUnwrap(cli.DemoTenant))
	forged.Header.Set(access.RequestInfoHeader, `{"acc":"x","user":"UFORGED","name_tag":"viewer","tags":["keyward-role:reader","keyward-service:*","keyward-purpose:*"]}`)
	forged.Data, _ = json.Marshal(keybroker.UnwrapRequest{TenantID: cli.DemoTenant, AssetID: "rec-1", Prefix: []byte{1}, RecipientPublicKey: make([]byte, 32), Purpose: "playback"})
	forged.Reply = chatBot.NewInbox()
	reply, err := chatBot.RequestMsg(forged, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var fr keybroker.UnwrapResponse
	if err := json.Unmarshal(reply.Data, &fr); err != nil || fr.Error == nil || fr.Error.Code != keybroker.CodeNotAuthorized {
		t.Errorf("a forged identity header: %s, want %s", reply.Data, keybroker.CodeNotAuthorized)
	}

	// Producers, the operator and tenant admins cannot even ask: the server
	// refuses the publish.
	for _, name := range []string{cli.IdentityProducer, cli.IdentityOperator, "admin-" + cli.DemoTenant} {
		nc, _ := as(t, d, name)
		errs := make(chan error, 4)
		nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
		if err := nc.Publish(events.SubjectKeyUnwrap(cli.DemoTenant), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation") {
				t.Errorf("%s asking the broker: %v, want a permissions violation", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s published an unwrap request without a permissions violation", name)
		}
	}

	// Every decision is on KW_AUDIT with the caller NATS authenticated.
	obsNC, obsJS := observe(t, d)
	_ = obsNC
	recs := auditRecords(t, ctx, obsJS, 8)
	type seen struct{ name, result, code, purpose string }
	var got []seen
	for _, r := range recs {
		// A refusal decided before the ledger is read (role, purpose,
		// tenant denial) names no service: nothing of the asset was looked up.
		if r.TenantID != cli.DemoTenant || r.AssetID != "rec-1" || (r.Service != "cloud_recording" && r.Service != "") || r.Caller.User == "" {
			t.Errorf("record %+v: wrong asset, service or no caller", r)
		}
		if r.Result == events.KeyAccessReleased && r.Service != "cloud_recording" {
			t.Errorf("release record %+v names no service", r)
		}
		got = append(got, seen{r.Caller.Name, r.Result, r.Code, r.Purpose})
	}
	wantSeen := []seen{
		{"viewer", events.KeyAccessReleased, "", "playback"},
		{"viewer", events.KeyAccessRefused, keybroker.CodeNotAuthorized, "transcription"},
		{"chat-bot", events.KeyAccessRefused, keybroker.CodeNotAuthorized, "playback"},
		{"viewer", events.KeyAccessRefused, keybroker.CodeInvalidRequest, ""},
		{"viewer", events.KeyAccessRefused, keybroker.CodeInvalidRequest, ""},
		{"viewer", events.KeyAccessReleased, "", "support"},
	}
	for i, w := range wantSeen {
		if i >= len(got) || got[i] != w {
			t.Fatalf("audit records %+v, want them to start with %+v", got, wantSeen)
		}
	}
	last := got[len(got)-1]
	if (last != seen{"chat-bot", events.KeyAccessRefused, keybroker.CodeNotAuthorized, "playback"}) {
		t.Errorf("last record %+v: the forged request must be recorded as chat-bot's", last)
	}
	denied := false
	for _, g := range got {
		denied = denied || (g == seen{"viewer", events.KeyAccessRefused, keybroker.CodePurposeDenied, "support"})
	}
	if !denied {
		t.Errorf("no purpose_denied record in %+v", got)
	}
}

// auditRecords reads the KeyAccess records on KW_AUDIT, waiting until at
// least min are there.
func auditRecords(t *testing.T, ctx context.Context, js jetstream.JetStream, min int) []events.KeyAccess {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := js.Stream(ctx, events.StreamAudit)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if int(info.State.Msgs) >= min || time.Now().After(deadline) {
			var out []events.KeyAccess
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				e, err := events.DecodeKeyAccess(m.Data)
				if err != nil {
					t.Fatalf("KW_AUDIT #%d: %v", seq, err)
				}
				out = append(out, *e)
			}
			if len(out) < min {
				t.Fatalf("%d audit records, want at least %d", len(out), min)
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}
