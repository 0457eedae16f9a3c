package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FileSink is a Sender for development: each message is written to
// <dir>/<sanitized MessageID>.eml instead of being sent. Sending the same
// MessageID again replaces the file, as an idempotent mail relay would
// deduplicate it.
type FileSink struct {
	dir string
}

var _ Sender = (*FileSink)(nil)

// NewFileSink writes each message as <dir>/<sanitized MessageID>.eml (mode
// 0600), creating dir with mode 0700 if it does not exist.
func NewFileSink(dir string) (*FileSink, error) {
	if dir == "" {
		return nil, fmt.Errorf("mail: file sink directory is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail: file sink directory: %w", err)
	}
	return &FileSink{dir: dir}, nil
}

// Dir returns the directory the sink writes to.
func (f *FileSink) Dir() string { return f.dir }

// Send writes m to <dir>/<sanitized MessageID>.eml and returns that path.
// A message without MessageID gets a random one. Invalid messages fail with
// ErrInvalidMessage, as with SMTP.
func (f *FileSink) Send(ctx context.Context, m *Message) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	msg, _, err := m.build(time.Now())
	if err != nil {
		return "", err
	}
	id := m.messageID()
	if id == "" {
		id = strings.TrimSuffix(strings.TrimPrefix(msg.GetMessageID(), "<"), ">")
		if id == "" {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
	}
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		return "", fmt.Errorf("mail: render message: %w", err)
	}
	path := filepath.Join(f.dir, sanitizeFileName(id)+".eml")
	// Write a temporary file (CreateTemp makes it 0600) and rename it, so a
	// reader never sees half a message.
	tmp, err := os.CreateTemp(f.dir, ".tmp-*.eml")
	if err != nil {
		return "", fmt.Errorf("mail: file sink: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("mail: file sink: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("mail: file sink: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("mail: file sink: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("mail: file sink: %w", err)
	}
	return path, nil
}

// Close does nothing; it exists to satisfy Sender.
func (f *FileSink) Close() error { return nil }

// sanitizeFileName keeps ASCII letters, digits, '.', '-', '_', '@' and '+'
// and replaces everything else with '_'; a leading '.' becomes '_' so the
// name is never hidden, "." or "..".
func sanitizeFileName(id string) string {
	b := []byte(id)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '@', c == '+':
		case c == '.' && i > 0:
		default:
			b[i] = '_'
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}
