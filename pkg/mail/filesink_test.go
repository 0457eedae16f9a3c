package mail_test

import (
	"context"
	"io"
	"mime"
	"mime/multipart"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/mail"
)

func TestFileSink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	sink, err := mail.NewFileSink(dir)
	if err != nil {
		t.Fatalf("NewFileSink err = %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v (err %v), want 0700", fi.Mode().Perm(), err)
	}
	m := message("ops@example.com", "kw.evt/../1.abc@keyward")
	path, err := sink.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send err = %v", err)
	}
	if filepath.Dir(path) != dir || !strings.HasSuffix(path, ".eml") || strings.Contains(filepath.Base(path), "/") {
		t.Errorf("Send = %q, want a .eml file directly in %s", path, dir)
	}
	fi, err = os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := netmail.ReadMessage(f)
	if err != nil {
		t.Fatalf("ReadMessage(%s) err = %v", path, err)
	}
	if id := got.Header.Get("Message-ID"); id != "<kw.evt/../1.abc@keyward>" {
		t.Errorf("Message-ID = %q", id)
	}
	if v := got.Header.Get("X-Keyward-Event"); v != "dev.keyward.key.status.changed.v1" {
		t.Errorf("X-Keyward-Event = %q", v)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(got.Header.Get("Subject"))
	if err != nil || subj != m.Subject {
		t.Errorf("Subject = %q (err %v), want %q", subj, err, m.Subject)
	}
	mt, params, err := mime.ParseMediaType(got.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (err %v), want multipart/alternative", mt, err)
	}
	mr := multipart.NewReader(got.Body, params["boundary"])
	var types []string
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		ct := p.Header.Get("Content-Type")
		types = append(types, ct)
		if strings.HasPrefix(ct, "text/html") && string(b) != m.HTML {
			t.Errorf("html part = %q, want %q", b, m.HTML)
		}
	}
	if len(types) != 2 {
		t.Errorf("parts = %q, want text and html", types)
	}

	// The same MessageID replaces the file (idempotent); no temp files stay.
	if again, err := sink.Send(context.Background(), m); err != nil || again != path {
		t.Errorf("second Send = %q, %v, want %q", again, err, path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir has %d entries, want 1", len(entries))
	}
	// Without MessageID a random one is made.
	m.MessageID = ""
	if p, err := sink.Send(context.Background(), m); err != nil || p == path {
		t.Errorf("Send without MessageID = %q, %v", p, err)
	}
}
