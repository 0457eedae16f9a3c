package localkms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/localkms"
)

var ec = kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

// setup creates key files a.key, b.key and disabled.key in a temp dir and
// returns a provider rooted there.
func setup(t *testing.T) (dir string, p *localkms.Provider) {
	t.Helper()
	dir = t.TempDir()
	for _, name := range []string{"a.key", "b.key", "disabled.key"} {
		if err := localkms.CreateKeyFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := localkms.SetDisabled(filepath.Join(dir, "disabled.key"), true); err != nil {
		t.Fatal(err)
	}
	return dir, localkms.New(localkms.WithBaseDir(dir))
}

func conformanceConfig(p kms.Provider) kmstest.ConformanceConfig {
	return kmstest.ConformanceConfig{
		Provider:    p,
		KeyA:        kms.MustParseKeyURI("localkms://a.key"),
		KeyB:        kms.MustParseKeyURI("localkms://b.key"),
		DisabledKey: kms.MustParseKeyURI("localkms://disabled.key"),
		MissingKey:  kms.MustParseKeyURI("localkms://missing.key"),
	}
}

func TestConformance(t *testing.T) {
	_, p := setup(t)
	kmstest.RunConformance(t, conformanceConfig(p))
}

func TestConformanceThroughClient(t *testing.T) {
	_, p := setup(t)
	c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p))
	kmstest.RunConformance(t, conformanceConfig(c))
}

func TestConformanceAbsolutePaths(t *testing.T) {
	dir, _ := setup(t)
	abs := func(name string) kms.KeyURI {
		return kms.MustParseKeyURI("localkms://" + filepath.ToSlash(filepath.Join(dir, name)))
	}
	kmstest.RunConformance(t, kmstest.ConformanceConfig{
		Provider:    localkms.New(), // no base dir needed for absolute paths
		KeyA:        abs("a.key"),
		KeyB:        abs("b.key"),
		DisabledKey: abs("disabled.key"),
		MissingKey:  abs("missing.key"),
	})
}

func TestKeyFileFormat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "dir", "k.key")
	if err := localkms.CreateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode = %04o, want 0600", fi.Mode().Perm())
		}
		di, _ := os.Stat(filepath.Dir(path))
		if di.Mode().Perm() != 0o700 {
			t.Errorf("parent dir mode = %04o, want 0700", di.Mode().Perm())
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Format   string `json:"format"`
		KeyID    string `json:"key_id"`
		Disabled bool   `json:"disabled"`
		Versions []struct {
			ID        string `json:"id"`
			CreatedAt string `json:"created_at"`
			Material  []byte `json:"material"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Format != "keyward-localkms/v1" || len(doc.KeyID) != 32 || doc.Disabled || len(doc.Versions) != 1 {
		t.Fatalf("key file = %+v", doc)
	}
	v := doc.Versions[0]
	if v.ID != "1" || len(v.Material) != 32 {
		t.Errorf("version = id %q, %d bytes of material", v.ID, len(v.Material))
	}
	if _, err := time.Parse(time.RFC3339, v.CreatedAt); err != nil {
		t.Errorf("created_at %q: %v", v.CreatedAt, err)
	}
	if err := localkms.CreateKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateKeyFile of an existing file err = %v, want fs.ErrExist", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestRotate(t *testing.T) {
	dir, p := setup(t)
	ctx := t.Context()
	key := kms.MustParseKeyURI("localkms://a.key")
	old, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Destroy()
	if old.KeyVersion != "1" {
		t.Fatalf("KeyVersion = %q, want 1", old.KeyVersion)
	}
	v, err := localkms.RotateKeyFile(filepath.Join(dir, "a.key"))
	if err != nil || v != "2" {
		t.Fatalf("RotateKeyFile = %q, %v; want 2", v, err)
	}
	dk, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	if dk.KeyVersion != "2" {
		t.Errorf("KeyVersion after rotation = %q, want 2", dk.KeyVersion)
	}
	for _, d := range []*kms.DataKey{old, dk} {
		got, err := p.Decrypt(ctx, key, d.Ciphertext, ec)
		if err != nil {
			t.Fatalf("Decrypt of version %s err = %v", d.KeyVersion, err)
		}
		if !got.Equal(d.Plaintext) {
			t.Errorf("Decrypt of version %s returned different bytes", d.KeyVersion)
		}
		got.Destroy()
	}
}

func TestConcurrentRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.key")
	if err := localkms.CreateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := localkms.RotateKeyFile(path); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	v, err := localkms.RotateKeyFile(path)
	if err != nil || v != "12" {
		t.Errorf("RotateKeyFile after 10 concurrent rotations = %q, %v; want 12", v, err)
	}
}

func TestDisableTakesEffectAtOnce(t *testing.T) {
	dir, p := setup(t)
	ctx := t.Context()
	key := kms.MustParseKeyURI("localkms://a.key")
	dk, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	if err := localkms.SetDisabled(filepath.Join(dir, "a.key"), true); err != nil {
		t.Fatal(err)
	}
	_, err = p.Decrypt(ctx, key, dk.Ciphertext, ec)
	if !errors.Is(err, kms.ErrKeyDisabled) || !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("Decrypt with a disabled key err = %v, want ErrKeyDisabled", err)
	}
	if err := localkms.SetDisabled(filepath.Join(dir, "a.key"), false); err != nil {
		t.Fatal(err)
	}
	got, err := p.Decrypt(ctx, key, dk.Ciphertext, ec)
	if err != nil {
		t.Fatalf("Decrypt after re-enabling err = %v", err)
	}
	got.Destroy()
}

func TestWithCreate(t *testing.T) {
	dir := t.TempDir()
	p := localkms.New(localkms.WithBaseDir(dir), localkms.WithCreate(true))
	key := kms.MustParseKeyURI("localkms://nested/new.key")
	ctx := t.Context()
	// Decrypt never creates.
	if _, err := p.Decrypt(ctx, key, []byte("KWL1"), ec); kms.CodeOf(err) != kms.CodeKeyNotFound {
		t.Fatalf("Decrypt with a missing key err = %v, want key_not_found", err)
	}
	var wg sync.WaitGroup
	for range 8 { // concurrent first use creates one file, not eight
		wg.Go(func() {
			dk, err := p.GenerateDataKey(ctx, key, ec)
			if err != nil {
				t.Error(err)
				return
			}
			dk.Destroy()
		})
	}
	wg.Wait()
	dk, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	got, err := localkms.New(localkms.WithBaseDir(dir)).Decrypt(ctx, key, dk.Ciphertext, ec)
	if err != nil {
		t.Fatalf("Decrypt with the created key err = %v", err)
	}
	got.Destroy()
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(filepath.Join(dir, "nested", "new.key"))
		di, _ := os.Stat(filepath.Join(dir, "nested"))
		if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
			t.Errorf("modes = %04o (file), %04o (dir); want 0600, 0700", fi.Mode().Perm(), di.Mode().Perm())
		}
	}
}

func TestFileErrors(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permission bits are not enforced on Windows")
	}
	dir, p := setup(t)
	ctx := t.Context()
	write := func(name, content string, mode os.FileMode) kms.KeyURI {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return kms.MustParseKeyURI("localkms://" + name)
	}
	good, err := os.ReadFile(filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.Unmarshal(good, &doc)
	mutate := func(f func(map[string]any)) string {
		var d map[string]any
		_ = json.Unmarshal(good, &d)
		f(d)
		b, _ := json.Marshal(d)
		return string(b)
	}
	version := func(d map[string]any) map[string]any { return d["versions"].([]any)[0].(map[string]any) }
	material := version(doc)["material"].(string)

	tests := []struct {
		name    string
		key     kms.KeyURI
		code    kms.Code
		message string // a substring the message must contain
	}{
		{"world readable", write("open.key", string(good), 0o644), kms.CodeAccessDenied, "chmod 600 " + filepath.Join(dir, "open.key")},
		{"group readable", write("group.key", string(good), 0o640), kms.CodeAccessDenied, "chmod 600"},
		{"not JSON", write("junk.key", "not json", 0o600), kms.CodeInternal, filepath.Join(dir, "junk.key")},
		{"wrong format", write("fmt.key", mutate(func(d map[string]any) { d["format"] = "v0" }), 0o600), kms.CodeInternal, "format"},
		{"unknown field", write("unk.key", mutate(func(d map[string]any) { d["disable"] = true }), 0o600), kms.CodeInternal, "unk.key"},
		{"bad key id", write("kid.key", mutate(func(d map[string]any) { d["key_id"] = "xyz" }), 0o600), kms.CodeInternal, "key_id"},
		{"no versions", write("nov.key", mutate(func(d map[string]any) { d["versions"] = []any{} }), 0o600), kms.CodeInternal, "no versions"},
		{"short material", write("short.key", mutate(func(d map[string]any) { version(d)["material"] = "AAAA" }), 0o600), kms.CodeInternal, "material"},
		{"bad time", write("time.key", mutate(func(d map[string]any) { version(d)["created_at"] = "yesterday" }), 0o600), kms.CodeInternal, "created_at"},
		{"trailing data", write("trail.key", string(good)+"{}", 0o600), kms.CodeInternal, "trail.key"},
		{"missing", kms.MustParseKeyURI("localkms://nope.key"), kms.CodeKeyNotFound, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.GenerateDataKey(ctx, tt.key, ec)
			if got := kms.CodeOf(err); got != tt.code {
				t.Fatalf("GenerateDataKey err = %v, want code %s", err, tt.code)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not contain %q", err, tt.message)
			}
			if strings.Contains(err.Error(), material) {
				t.Errorf("error %q contains key material", err)
			}
		})
	}
	t.Run("directory as key file", func(t *testing.T) {
		if err := os.Mkdir(filepath.Join(dir, "d.key"), 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := p.GenerateDataKey(ctx, kms.MustParseKeyURI("localkms://d.key"), ec)
		if kms.CodeOf(err) != kms.CodeInternal {
			t.Errorf("GenerateDataKey of a directory err = %v, want internal", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any file")
		}
		k := write("noread.key", string(good), 0o200)
		_, err := p.GenerateDataKey(ctx, k, ec)
		if kms.CodeOf(err) != kms.CodeAccessDenied {
			t.Errorf("GenerateDataKey of an unreadable file err = %v, want access_denied", err)
		}
	})
	t.Run("package funcs refuse bad files", func(t *testing.T) {
		if _, err := localkms.RotateKeyFile(filepath.Join(dir, "open.key")); kms.CodeOf(err) != kms.CodeAccessDenied {
			t.Errorf("RotateKeyFile of a world-readable file err = %v", err)
		}
		if err := localkms.SetDisabled(filepath.Join(dir, "nope.key"), true); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("SetDisabled of a missing file err = %v", err)
		}
	})
}

func TestTampering(t *testing.T) {
	dir, p := setup(t)
	ctx := t.Context()
	key := kms.MustParseKeyURI("localkms://a.key")
	dk, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	ct := dk.Ciphertext
	if !bytes.HasPrefix(ct, []byte("KWL1\x011")) || len(ct) != 4+1+1+12+32+16 {
		t.Fatalf("ciphertext layout: % x... (%d bytes)", ct[:6], len(ct))
	}
	// A copy of the key file under another name has the same key id and
	// material: it decrypts. A fresh key file with another key id does not.
	data, _ := os.ReadFile(filepath.Join(dir, "a.key"))
	if err := os.WriteFile(filepath.Join(dir, "copy.key"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := p.Decrypt(ctx, kms.MustParseKeyURI("localkms://copy.key"), ct, ec)
	if err != nil {
		t.Fatalf("Decrypt with a copy of the key file err = %v", err)
	}
	got.Destroy()
	// Same material, different key id: the key id is bound.
	var doc map[string]any
	_ = json.Unmarshal(data, &doc)
	doc["key_id"] = strings.Repeat("0", 32)
	b, _ := json.Marshal(doc)
	if err := os.WriteFile(filepath.Join(dir, "otherid.key"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = p.Decrypt(ctx, kms.MustParseKeyURI("localkms://otherid.key"), ct, ec)
	if !errors.Is(err, kms.ErrInvalidCiphertext) {
		t.Errorf("Decrypt under another key id err = %v, want ErrInvalidCiphertext", err)
	}
	// Version id changed in the ciphertext (to one that exists after a rotation).
	if _, err := localkms.RotateKeyFile(filepath.Join(dir, "a.key")); err != nil {
		t.Fatal(err)
	}
	moved := bytes.Clone(ct)
	moved[5] = '2'
	if _, err := p.Decrypt(ctx, key, moved, ec); !errors.Is(err, kms.ErrInvalidCiphertext) {
		t.Errorf("Decrypt with the version id changed err = %v, want ErrInvalidCiphertext", err)
	}
	// Every single-byte truncation and every single-bit flip fails.
	for i := range ct {
		if _, err := p.Decrypt(ctx, key, ct[:i], ec); !errors.Is(err, kms.ErrInvalidCiphertext) {
			t.Fatalf("Decrypt of ct[:%d] err = %v", i, err)
		}
		c := bytes.Clone(ct)
		c[i] ^= 0x80
		if _, err := p.Decrypt(ctx, key, c, ec); !errors.Is(err, kms.ErrInvalidCiphertext) {
			t.Fatalf("Decrypt with byte %d flipped err = %v", i, err)
		}
	}
}

func TestWrongScheme(t *testing.T) {
	p := localkms.New()
	_, err := p.GenerateDataKey(t.Context(), kms.MustParseKeyURI("awskms://alias/x?region=eu-west-2"), ec)
	if kms.CodeOf(err) != kms.CodeInvalidArgument {
		t.Errorf("GenerateDataKey with an awskms URI err = %v, want invalid_argument", err)
	}
}

func TestInvalidContext(t *testing.T) {
	_, p := setup(t)
	_, err := p.GenerateDataKey(t.Context(), kms.MustParseKeyURI("localkms://a.key"), kms.EncryptionContext{"": "x"})
	if kms.CodeOf(err) != kms.CodeInvalidArgument {
		t.Errorf("GenerateDataKey with an invalid context err = %v, want invalid_argument", err)
	}
}

func BenchmarkLocalKMSGenerate(b *testing.B) {
	dir := b.TempDir()
	if err := localkms.CreateKeyFile(filepath.Join(dir, "a.key")); err != nil {
		b.Fatal(err)
	}
	p := localkms.New(localkms.WithBaseDir(dir))
	key := kms.MustParseKeyURI("localkms://a.key")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		dk, err := p.GenerateDataKey(ctx, key, ec)
		if err != nil {
			b.Fatal(err)
		}
		dk.Destroy()
	}
}
