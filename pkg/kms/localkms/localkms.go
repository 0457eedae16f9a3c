package localkms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/keyward/keyward/pkg/kms"
)

// Ciphertext and AAD constants of the wrap format (see the package
// documentation).
const (
	// Magic starts every ciphertext.
	Magic = "KWL1"
	// AADLabel starts the additional authenticated data of every wrap.
	AADLabel = "keyward-localkms/v1 wrap\x00"

	nonceSize = 12
	tagSize   = 16
	keySize   = 32
)

// Provider wraps keys under AES-256 key-encryption keys kept in local files
// (localkms://<path> key URIs). It re-reads the key file on every call, so a
// disable, rotation or deletion takes effect at once. It is safe for
// concurrent use.
type Provider struct {
	baseDir string
	create  bool
}

var _ kms.Provider = (*Provider)(nil)

// Option configures New.
type Option func(*Provider)

// WithBaseDir resolves relative key file paths (localkms://keys/a.key)
// against dir instead of the process's working directory.
func WithBaseDir(dir string) Option { return func(p *Provider) { p.baseDir = dir } }

// WithCreate makes GenerateDataKey and Encrypt create a missing key file with
// a fresh random key (file mode 0600, missing parent directories 0700)
// instead of failing with CodeKeyNotFound. Decrypt never creates: a key that
// did not exist cannot have wrapped anything.
func WithCreate(create bool) Option { return func(p *Provider) { p.create = create } }

// New returns a Provider. Register it with
// kms.WithProvider(kms.SchemeLocal, localkms.New(...)).
func New(opts ...Option) *Provider {
	p := &Provider{}
	for _, o := range opts {
		if o != nil {
			o(p)
		}
	}
	return p
}

// Path returns the key file that key names: its key id, resolved against the
// base directory when relative.
func (p *Provider) Path(key kms.KeyURI) string {
	path := filepath.FromSlash(key.KeyID)
	if !filepath.IsAbs(path) && p.baseDir != "" {
		path = filepath.Join(p.baseDir, path)
	}
	return path
}

// GenerateDataKey returns a fresh 32-byte key from crypto/rand wrapped under
// the newest version of key.
func (p *Provider) GenerateDataKey(ctx context.Context, key kms.KeyURI, ec kms.EncryptionContext) (*kms.DataKey, error) {
	const op = kms.OpGenerateDataKey
	b := make([]byte, keySize)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	pt := kms.NewSecret(b)
	w, err := p.wrap(ctx, op, key, pt, ec)
	if err != nil {
		pt.Destroy()
		return nil, err
	}
	return &kms.DataKey{Plaintext: pt, Ciphertext: w.Ciphertext, KeyVersion: w.KeyVersion}, nil
}

// Encrypt wraps plaintext (1 to kms.MaxPlaintextLen bytes) under the newest
// version of key.
func (p *Provider) Encrypt(ctx context.Context, key kms.KeyURI, plaintext *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	const op = kms.OpEncrypt
	switch n := plaintext.Len(); {
	case n == 0:
		return nil, newError(kms.CodeInvalidArgument, op, key, errors.New("plaintext is empty or destroyed"))
	case n > kms.MaxPlaintextLen:
		return nil, newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("plaintext is %d bytes, at most %d allowed", n, kms.MaxPlaintextLen))
	}
	return p.wrap(ctx, op, key, plaintext, ec)
}

func (p *Provider) wrap(ctx context.Context, op string, key kms.KeyURI, plaintext *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	kf, err := p.load(ctx, op, key, ec, p.create)
	if err != nil {
		return nil, err
	}
	v := &kf.Versions[len(kf.Versions)-1]
	aead, err := v.aead()
	if err != nil {
		return nil, newError(kms.CodeInternal, op, key, err)
	}
	out := make([]byte, 0, len(Magic)+1+len(v.ID)+nonceSize+plaintext.Len()+tagSize)
	out = append(out, Magic...)
	out = append(out, byte(len(v.ID)))
	out = append(out, v.ID...)
	nonce := out[len(out) : len(out)+nonceSize]
	_, _ = rand.Read(nonce)
	out = out[:len(out)+nonceSize]
	out = aead.Seal(out, nonce, plaintext.Bytes(), additionalData(kf.KeyID, v.ID, ec))
	return &kms.Wrapped{Ciphertext: out, KeyVersion: v.ID}, nil
}

// Decrypt unwraps a ciphertext made by GenerateDataKey or Encrypt under any
// version of key with the same encryption context.
func (p *Provider) Decrypt(ctx context.Context, key kms.KeyURI, ciphertext []byte, ec kms.EncryptionContext) (*kms.Secret, error) {
	const op = kms.OpDecrypt
	kf, err := p.load(ctx, op, key, ec, false)
	if err != nil {
		return nil, err
	}
	vid, nonce, sealed, err := parseCiphertext(ciphertext)
	if err != nil {
		return nil, newError(kms.CodeInvalidCiphertext, op, key, err)
	}
	v := kf.version(vid)
	if v == nil {
		return nil, newError(kms.CodeInvalidCiphertext, op, key,
			errors.New("ciphertext names a key version this key file does not have (wrong key file?)"))
	}
	aead, err := v.aead()
	if err != nil {
		return nil, newError(kms.CodeInternal, op, key, err)
	}
	pt, err := aead.Open(nil, nonce, sealed, additionalData(kf.KeyID, vid, ec))
	if err != nil {
		return nil, newError(kms.CodeInvalidCiphertext, op, key,
			errors.New("authentication failed: wrong key, wrong encryption context, or modified ciphertext"))
	}
	return kms.NewSecret(pt), nil
}

// load checks ctx and ec, reads the key file (creating it if create) and
// refuses a disabled key.
func (p *Provider) load(ctx context.Context, op string, key kms.KeyURI, ec kms.EncryptionContext, create bool) (*keyFile, error) {
	if ctx.Err() != nil {
		return nil, newError(kms.CodeInternal, op, key, kms.CanceledCause(ctx))
	}
	if key.Scheme != kms.SchemeLocal || key.KeyID == "" {
		return nil, newError(kms.CodeInvalidArgument, op, key, fmt.Errorf("localkms cannot use a %q key URI", key.Scheme))
	}
	if err := ec.Validate(); err != nil {
		return nil, newError(kms.CodeInvalidArgument, op, key, err)
	}
	path := p.Path(key)
	kf, err := readKeyFile(path)
	if create && kms.CodeOf(err) == kms.CodeKeyNotFound {
		if cerr := CreateKeyFile(path); cerr != nil && !errors.Is(cerr, fs.ErrExist) {
			return nil, withOp(cerr, op, key)
		}
		kf, err = readKeyFile(path)
	}
	if err != nil {
		return nil, withOp(err, op, key)
	}
	if kf.Disabled {
		return nil, newError(kms.CodeKeyDisabled, op, key, fmt.Errorf("key file %s is disabled", path))
	}
	if ctx.Err() != nil {
		return nil, newError(kms.CodeInternal, op, key, kms.CanceledCause(ctx))
	}
	return kf, nil
}

// parseCiphertext splits magic || u8 len || version id || nonce || sealed.
// Its errors never quote the input.
func parseCiphertext(ct []byte) (vid string, nonce, sealed []byte, err error) {
	if len(ct) < len(Magic)+1 || string(ct[:len(Magic)]) != Magic {
		return "", nil, nil, errors.New("not a localkms ciphertext (bad magic)")
	}
	rest := ct[len(Magic):]
	n := int(rest[0])
	rest = rest[1:]
	if n == 0 || len(rest) < n+nonceSize+tagSize {
		return "", nil, nil, errors.New("truncated ciphertext")
	}
	return string(rest[:n]), rest[n : n+nonceSize], rest[n+nonceSize:], nil
}

// additionalData is AADLabel || key_id || u8 len(version id) || version id
// || ec.Canonical(). key_id has a fixed length (32 hex digits), so the
// concatenation is unambiguous.
func additionalData(keyID, vid string, ec kms.EncryptionContext) []byte {
	c := ec.Canonical()
	b := make([]byte, 0, len(AADLabel)+len(keyID)+1+len(vid)+len(c))
	b = append(b, AADLabel...)
	b = append(b, keyID...)
	b = append(b, byte(len(vid)))
	b = append(b, vid...)
	return append(b, c...)
}

func (v *keyVersion) aead() (cipher.AEAD, error) {
	mat, err := base64.StdEncoding.DecodeString(v.Material)
	if err != nil || len(mat) != keySize {
		clear(mat)
		return nil, fmt.Errorf("key version %s has invalid material", v.ID)
	}
	defer clear(mat)
	block, err := aes.NewCipher(mat)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func newError(code kms.Code, op string, key kms.KeyURI, err error) *kms.Error {
	return &kms.Error{Code: code, Provider: kms.SchemeLocal, Op: op, Key: key.String(), Err: err}
}

// withOp returns err (a *kms.Error from the key file functions) with op and
// key filled in.
func withOp(err error, op string, key kms.KeyURI) error {
	var ke *kms.Error
	if errors.As(err, &ke) {
		e := *ke
		e.Op, e.Key = op, key.String()
		return &e
	}
	return newError(kms.CodeInternal, op, key, err)
}
