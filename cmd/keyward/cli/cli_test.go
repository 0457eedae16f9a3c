package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/events"
)

type result struct {
	code           int
	stdout, stderr string
}

// run runs the keyward command against the NATS server at url. When url
// is a dev stack's (registerDev), the command finds its credentials in the
// stack's creds dir, as it would in the directory of `keyward dev`, and,
// when the stack runs with TLS, trusts its CA (NATS_CA).
func run(t *testing.T, url string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	credsDir, _ := devCredsDirs.Load(url)
	caFile, _ := devCAFiles.Load(url)
	getenv := func(k string) string {
		if k == "KEYWARD_CREDS_DIR" && credsDir != nil {
			return credsDir.(string)
		}
		if k == "NATS_CA" && caFile != nil {
			return caFile.(string)
		}
		return ""
	}
	code := cli.Main(ctx, append([]string{"--nats-url", url}, args...), strings.NewReader(stdin), &out, &errb, getenv)
	return result{code, out.String(), errb.String()}
}

// devCredsDirs maps a dev stack's NATS URL to its creds dir, devCAFiles
// to its CA certificate (stacks with TLS).
var devCredsDirs, devCAFiles sync.Map

// registerDev lets run find d's credentials and CA.
func registerDev(t testing.TB, d *cli.Dev) {
	devCredsDirs.Store(d.URL(), d.CredsDir)
	if d.CAFile != "" {
		devCAFiles.Store(d.URL(), d.CAFile)
	}
	t.Cleanup(func() { devCredsDirs.Delete(d.URL()); devCAFiles.Delete(d.URL()) })
}

func startDev(t *testing.T, dir string) *cli.Dev {
	t.Helper()
	d, err := cli.StartDev(context.Background(), cli.DevOptions{DataDir: dir, Port: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	registerDev(t, d)
	return d
}

func TestDevPutGetStatus(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, filepath.Join(dir, "data"))
	url := d.URL()

	small := filepath.Join(dir, "hello.txt")
	os.WriteFile(small, []byte("hello, keyward\n"), 0o644)
	big := filepath.Join(dir, "recording.bin")
	bigData := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16+7) // staged, several chunks
	os.WriteFile(big, bigData, 0o644)

	r := run(t, url, "", "asset", "put", "--tenant", "demo", small)
	if r.code != 0 || !strings.Contains(r.stdout, "mode        customer (covered)") {
		t.Fatalf("put small: %+v", r)
	}
	r = run(t, url, "", "--json", "asset", "put", "--tenant", "demo", "--service", "whiteboard", big)
	var enc events.AssetEncrypted
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &enc) != nil || enc.Size != int64(len(bigData)) {
		t.Fatalf("put big: %+v", r)
	}
	r = run(t, url, "", "asset", "get", "--tenant", "demo", "hello.txt")
	if r.code != 0 || r.stdout != "hello, keyward\n" {
		t.Fatalf("get small: %+v", r)
	}
	out := filepath.Join(dir, "out.bin")
	if r = run(t, url, "", "asset", "get", "--tenant", "demo", "-o", out, "recording.bin"); r.code != 0 {
		t.Fatalf("get big: %+v", r)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, bigData) {
		t.Fatal("get -o wrote different bytes")
	}
	for rng, want := range map[string]string{"0-4": "hello", "7-": "keyward\n", "-3": "rd\n", "7-13": "keyward"} {
		if r = run(t, url, "", "asset", "get", "--tenant", "demo", "--range", rng, "hello.txt"); r.code != 0 || r.stdout != want {
			t.Errorf("--range %s = %q (%+v), want %q", rng, r.stdout, r, want)
		}
	}
	if r = run(t, url, "", "asset", "get", "--tenant", "demo", "--range", "99-", "hello.txt"); r.code != 2 {
		t.Errorf("range beyond the end: %+v", r)
	}
	// stdin needs --id.
	if r = run(t, url, "from stdin", "asset", "put", "--tenant", "demo", "-"); r.code != 2 || !strings.Contains(r.stderr, "--id") {
		t.Errorf("stdin without --id: %+v", r)
	}
	if r = run(t, url, "from stdin", "asset", "put", "--tenant", "demo", "--id", "piped", "-"); r.code != 0 {
		t.Errorf("stdin put: %+v", r)
	}
	if r = run(t, url, "", "asset", "get", "--tenant", "demo", "missing"); r.code != 1 || !strings.Contains(r.stderr, "not in the vault") {
		t.Errorf("get missing: %+v", r)
	}
	if r = run(t, url, "", "asset", "put", "--tenant", "Bad.Tenant", small); r.code != 2 || !strings.Contains(r.stderr, "--tenant") {
		t.Errorf("bad tenant: %+v", r)
	}

	r = run(t, url, "", "--json", "status")
	var st cli.Status
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("status: %+v", r)
	}
	found := false
	for _, c := range st.Consumers {
		if c.Name == events.ConsumerEncryptor && c.Pending == 0 && c.AckPending == 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("status shows no settled encryptor consumer: %+v", st.Consumers)
	}
	for _, s := range st.Streams {
		if s.Name == events.StreamAssets && s.Messages != 3 {
			t.Errorf("KW_ASSETS holds %d messages, want 3", s.Messages)
		}
	}
	if r = run(t, url, "", "status"); r.code != 0 || !strings.Contains(r.stdout, "KW_INGEST") || !strings.Contains(r.stdout, "DEAD LETTERS") {
		t.Errorf("status text: %+v", r)
	}
}

func TestTenantApplyShowAndRejection(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, filepath.Join(dir, "data"))
	url := d.URL()
	// A tenant whose key file is missing: its assets are refused, not stored.
	doc := `{
  "tenant_id": "acme",
  "keys": [{"uri": "localkms://` + filepath.Join(dir, "gone.key") + `", "role": "primary", "enrolled_at": "2020-01-01T00:00:00Z"}],
  "services": ["*"], "licensed_users": ["*"], "fallback_enabled": false, "phone": {"drop_calls": true}
}`
	file := filepath.Join(dir, "acme.json")
	os.WriteFile(file, []byte(doc), 0o644)
	if r := run(t, url, "", "tenant", "apply", "-f", file); r.code != 1 || !strings.Contains(r.stderr, "keys[0].uri") {
		t.Fatalf("apply with a local key without --allow-local-keys: %+v", r)
	}
	if r := run(t, url, "", "tenant", "apply", "--allow-local-keys", "-f", file); r.code != 0 || !strings.Contains(r.stdout, "tenant acme applied") {
		t.Fatalf("apply: %+v", r)
	}
	r := run(t, url, "", "tenant", "show", "--tenant", "acme")
	if r.code != 0 || !strings.Contains(r.stdout, "drop calls    true") || !strings.Contains(r.stdout, "fallback      false") {
		t.Fatalf("show: %+v", r)
	}
	if r = run(t, url, "", "tenant", "show"); !strings.Contains(r.stdout, "acme") || !strings.Contains(r.stdout, "demo") {
		t.Fatalf("list: %+v", r)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"tenant_id": "Bad", "keys": [{"url": "x"}], "recipients": ["not an address"]}`), 0o644)
	r = run(t, url, "", "tenant", "apply", "-f", bad)
	if r.code != 1 || !strings.Contains(r.stderr, `did you mean "uri"`) {
		t.Fatalf("apply of a bad document: %+v", r)
	}
	src := filepath.Join(dir, "x.txt")
	os.WriteFile(src, []byte("secret"), 0o644)
	r = run(t, url, "", "asset", "put", "--tenant", "acme", src)
	if r.code != 3 || !strings.Contains(r.stdout, "customer_key_revoked") {
		t.Fatalf("put under a deleted key: %+v", r)
	}
	if r = run(t, url, "", "asset", "get", "--tenant", "acme", "x.txt"); r.code == 0 {
		t.Fatalf("a rejected asset was readable: %+v", r)
	}
}

func TestDLQListAndRedrive(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	url := d.URL()
	if _, err := d.JS.Publish(context.Background(), "keyward.asset.created.demo", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	var r result
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = run(t, url, "", "dlq", "list")
		if strings.Contains(r.stdout, "undecodable") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(r.stdout, "undecodable") || !strings.Contains(r.stdout, "keyward.asset.created.demo") {
		t.Fatalf("dlq list: %+v", r)
	}
	r = run(t, url, "", "--json", "dlq", "list")
	var letters []events.DeadLetter
	if json.Unmarshal([]byte(r.stdout), &letters) != nil || len(letters) != 1 || string(letters[0].Data) != "garbage" {
		t.Fatalf("dlq list --json: %+v", r)
	}
	if r = run(t, url, "", "dlq", "redrive", "--all"); r.code != 0 || !strings.Contains(r.stdout, "redrove") {
		t.Fatalf("redrive: %+v", r)
	}
	// Still garbage: it comes back, once.
	deadline = time.Now().Add(10 * time.Second)
	for {
		r = run(t, url, "", "--json", "dlq", "list")
		letters = nil
		json.Unmarshal([]byte(r.stdout), &letters)
		if len(letters) == 1 && letters[0].DLQSeq != 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(letters) != 1 || letters[0].DLQSeq == 1 {
		t.Fatalf("after redrive: %+v", letters)
	}
	if r = run(t, url, "", "dlq", "redrive"); r.code != 2 {
		t.Fatalf("redrive without arguments: %+v", r)
	}
}

func TestDevRestartKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	src := filepath.Join(t.TempDir(), "keep.txt")
	os.WriteFile(src, []byte("kept across restarts"), 0o644)
	if r := run(t, d.URL(), "", "asset", "put", "--tenant", "demo", src); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}
	d.Stop()
	d2 := startDev(t, dir)
	if d2.DemoKey != d.DemoKey {
		t.Fatalf("demo key changed across restarts: %s → %s", d.DemoKey, d2.DemoKey)
	}
	if r := run(t, d2.URL(), "", "asset", "get", "--tenant", "demo", "keep.txt"); r.code != 0 || r.stdout != "kept across restarts" {
		t.Fatalf("get after restart: %+v", r)
	}
}

func TestDevKeyDisableEnable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	src := filepath.Join(t.TempDir(), "a.txt")
	os.WriteFile(src, []byte("x"), 0o644)
	// A first asset caches a seed of the demo key.
	if r := run(t, d.URL(), "", "asset", "put", "--tenant", "demo", "--id", "before", src); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}
	if r := run(t, d.URL(), "", "dev", "key", "disable", "--data-dir", dir, "demo"); r.code != 0 || !strings.Contains(r.stdout, "disabled") || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("disable: %+v", r)
	}
	// The revocation takes effect for the next asset, cached seed or not.
	deadline := time.Now().Add(5 * time.Second)
	for d.Encryptor.KeyStatus(cli.DemoTenant, d.DemoKey.String()) != events.KeyStatusRevoked && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := run(t, d.URL(), "", "asset", "put", "--tenant", "demo", "--id", "after-disable", src); r.code != 3 || !strings.Contains(r.stdout, "customer_key_revoked") {
		t.Fatalf("put with the demo key disabled: %+v", r)
	}
	if r := run(t, d.URL(), "", "dev", "key", "enable", "--data-dir", dir, "demo"); r.code != 0 {
		t.Fatalf("enable: %+v", r)
	}
	deadline = time.Now().Add(5 * time.Second)
	for d.Encryptor.KeyStatus(cli.DemoTenant, d.DemoKey.String()) != events.KeyStatusAvailable && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := run(t, d.URL(), "", "asset", "put", "--tenant", "demo", "--id", "after-enable", src); r.code != 0 || !strings.Contains(r.stdout, "customer (covered)") {
		t.Fatalf("put with the demo key enabled again: %+v", r)
	}
	if r := run(t, d.URL(), "", "dev", "key", "toggle", "demo"); r.code != 2 {
		t.Fatalf("bad verb: %+v", r)
	}
}

func TestTenantKeyAddAndList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	r := run(t, d.URL(), "", "dev", "key", "create", "--data-dir", dir, "initech")
	if r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	uri := strings.SplitN(r.stdout, "\n", 2)[0]
	r = run(t, d.URL(), "", "tenant", "key", "add", "--tenant", "initech", "--uri", uri)
	if r.code != 0 || !strings.Contains(r.stdout, "enrolled "+uri) || !strings.Contains(r.stdout, "round trip") {
		t.Fatalf("key add: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "add", "--tenant", "initech", "--uri", uri)
	if r.code != 1 || !strings.Contains(r.stderr, "already enrolled") {
		t.Fatalf("second add: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "add", "--tenant", "initech", "--uri", "ocikms://ocid1.key.oc1.fra.v.k?endpoint=https://v-crypto.kms.eu-frankfurt-1.oraclecloud.com", "--role", "replica")
	if r.code != 1 || !strings.Contains(r.stderr, "region_not_served") {
		t.Fatalf("frankfurt: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "list", "--tenant", "initech")
	if r.code != 0 || !strings.Contains(r.stdout, uri) || !strings.Contains(r.stdout, "primary") {
		t.Fatalf("list: %+v", r)
	}
	src := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(src, []byte("covered"), 0o644)
	if r = run(t, d.URL(), "", "asset", "put", "--tenant", "initech", src); r.code != 0 || !strings.Contains(r.stdout, "customer (covered)") {
		t.Fatalf("put after enrollment: %+v", r)
	}
}
