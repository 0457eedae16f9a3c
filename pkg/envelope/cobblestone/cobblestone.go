package cobblestone

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
)

// Sizes of the Cobblestone-256 instantiation, in bytes.
const (
	KeySize            = 32                        // input key and AEAD key size
	SaltSize           = 24                        // random per-message salt
	CommitmentSize     = 32                        // key commitment
	HeaderSize         = SaltSize + CommitmentSize // salt || commitment
	ChunkSize          = 16384                     // plaintext bytes in a full chunk
	TagSize            = 16                        // AES-GCM tag
	NonceSize          = 12                        // AES-GCM nonce (and base nonce)
	EncryptedChunkSize = ChunkSize + TagSize       // ciphertext bytes of a full chunk

	// AEADName is the IANA name of the AEAD, bound into the key derivation.
	AEADName = "AEAD_AES_256_GCM"
)

// MaxPlaintextSize is the largest message the format can carry: 2^38 chunks,
// the last of which is short, i.e. 4 PiB - 1 byte.
const MaxPlaintextSize = 1<<52 - 1

const (
	// maxChunks is the number of chunk counters: a counter must stay below it.
	maxChunks = 1 << 38
	// messageKeySize is the length of MessageKey.Bytes: key || base nonce.
	messageKeySize = KeySize + NonceSize
	// infoPrefix starts the HKDF-Expand info of every Cobblestone message.
	infoPrefix = "c2sp.org/chunked-encryption@v1+" + AEADName + "\x00"
)

// Sentinel errors. Every error returned by this package that is caused by the
// key, the context or the ciphertext wraps exactly one of them, so callers
// classify with errors.Is; I/O errors of the underlying reader or writer are
// wrapped and passed through.
var (
	// ErrInvalidKeySize means an input key or message key has the wrong length.
	ErrInvalidKeySize = errors.New("cobblestone: invalid key size")
	// ErrCommitment means the header's commitment does not match the input key
	// and context: the wrong key, the wrong context, or a modified header. It is
	// returned before any chunk is decrypted.
	ErrCommitment = errors.New("cobblestone: key commitment mismatch (wrong key or context, or modified header)")
	// ErrAuthentication means a chunk failed AEAD authentication: it was
	// modified, reordered, swapped, duplicated, or the message was extended.
	ErrAuthentication = errors.New("cobblestone: chunk authentication failed")
	// ErrTruncated means the ciphertext length is impossible: a truncated
	// header, chunk or tag, a missing short final chunk, or a final piece
	// shorter than a tag.
	ErrTruncated = errors.New("cobblestone: truncated or malformed ciphertext length")
	// ErrTooLarge means the chunk counter would reach 2^38, i.e. the message
	// would exceed MaxPlaintextSize.
	ErrTooLarge = errors.New("cobblestone: message too large")
)

var (
	errKeyDestroyed   = errors.New("cobblestone: message key is nil or destroyed")
	errWriterClosed   = errors.New("cobblestone: Writer used after Close")
	errNegativeOffset = errors.New("cobblestone: negative offset")
)

// CiphertextSize returns the exact ciphertext length (header included) of a
// message of plaintextSize bytes. It returns -1 if plaintextSize is negative
// or larger than MaxPlaintextSize.
func CiphertextSize(plaintextSize int64) int64 {
	raw := rawCiphertextSize(plaintextSize)
	if raw < 0 {
		return -1
	}
	return HeaderSize + raw
}

// PlaintextSize returns the plaintext length of a ciphertext (header
// included) of ciphertextSize bytes. It returns an error wrapping
// ErrTruncated for lengths no message encrypts to, and ErrTooLarge for
// lengths beyond the format's maximum.
func PlaintextSize(ciphertextSize int64) (int64, error) {
	if ciphertextSize < HeaderSize {
		return 0, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrTruncated, ciphertextSize, HeaderSize)
	}
	return rawPlaintextSize(ciphertextSize - HeaderSize)
}

// rawCiphertextSize is CiphertextSize without the header.
func rawCiphertextSize(plaintextSize int64) int64 {
	if plaintextSize < 0 || plaintextSize > MaxPlaintextSize {
		return -1
	}
	full := plaintextSize / ChunkSize
	return full*EncryptedChunkSize + plaintextSize%ChunkSize + TagSize
}

// rawPlaintextSize is PlaintextSize for a bare chunk stream.
func rawPlaintextSize(size int64) (int64, error) {
	if size < 0 {
		return 0, fmt.Errorf("%w: negative length %d", ErrTruncated, size)
	}
	full, rem := size/EncryptedChunkSize, size%EncryptedChunkSize
	if full >= maxChunks {
		return 0, fmt.Errorf("%w: %d chunks", ErrTooLarge, full+1)
	}
	if rem < TagSize {
		if rem == 0 {
			return 0, fmt.Errorf("%w: missing final short chunk", ErrTruncated)
		}
		return 0, fmt.Errorf("%w: final chunk of %d bytes is shorter than a tag", ErrTruncated, rem)
	}
	return full*ChunkSize + rem - TagSize, nil
}

// MessageKey is the per-message key material of raw mode: the AEAD key and
// the base nonce. It cannot be printed or logged by accident; Destroy zeroes it.
// Hand it over only through Bytes, to a party that must decrypt exactly one
// message.
type MessageKey struct {
	m *[messageKeySize]byte // key || base nonce; nil once destroyed
}

const redactedMessageKey = "cobblestone.MessageKey(redacted)"

// String returns a redacted placeholder.
func (k MessageKey) String() string { return redactedMessageKey }

// GoString returns a redacted placeholder.
func (k MessageKey) GoString() string { return redactedMessageKey }

// Format prints a redacted placeholder for every verb.
func (k MessageKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redactedMessageKey) }

// LogValue implements slog.LogValuer with a redacted placeholder.
func (k MessageKey) LogValue() slog.Value { return slog.StringValue(redactedMessageKey) }

// Bytes returns a copy of key || base nonce (44 bytes), or nil if k is nil or
// destroyed. The caller owns, and should clear, the returned slice.
func (k *MessageKey) Bytes() []byte {
	if k == nil || k.m == nil {
		return nil
	}
	out := make([]byte, messageKeySize)
	copy(out, k.m[:])
	return out
}

// MessageKeyFromBytes parses the 44-byte output of Bytes. It copies b, which
// the caller may clear afterwards.
func MessageKeyFromBytes(b []byte) (*MessageKey, error) {
	if len(b) != messageKeySize {
		return nil, fmt.Errorf("%w: message key is %d bytes, want %d", ErrInvalidKeySize, len(b), messageKeySize)
	}
	m := new([messageKeySize]byte)
	copy(m[:], b)
	return &MessageKey{m: m}, nil
}

// Destroy zeroes the key material. A destroyed key is rejected by the raw
// constructors. It is safe to call more than once and on nil.
func (k *MessageKey) Destroy() {
	if k == nil || k.m == nil {
		return
	}
	clear(k.m[:])
	k.m = nil
}

// DeriveKey runs the spec's HKDF-Expand (SHA-512) over inputKey, salt and
// context and returns the message key and the commitment that goes after the
// salt in the header.
func DeriveKey(inputKey, salt, context []byte) (*MessageKey, [CommitmentSize]byte, error) {
	var commitment [CommitmentSize]byte
	if len(inputKey) != KeySize {
		return nil, commitment, fmt.Errorf("%w: input key is %d bytes, want %d", ErrInvalidKeySize, len(inputKey), KeySize)
	}
	if len(salt) != SaltSize {
		return nil, commitment, fmt.Errorf("cobblestone: salt is %d bytes, want %d", len(salt), SaltSize)
	}
	info := make([]byte, 0, len(infoPrefix)+SaltSize+len(context))
	info = append(info, infoPrefix...)
	info = append(info, salt...)
	info = append(info, context...)
	out, err := hkdf.Expand(sha512.New, inputKey, string(info), messageKeySize+CommitmentSize)
	if err != nil {
		return nil, commitment, fmt.Errorf("cobblestone: deriving message key: %w", err)
	}
	m := new([messageKeySize]byte)
	copy(m[:], out)
	copy(commitment[:], out[messageKeySize:])
	clear(out)
	return &MessageKey{m: m}, commitment, nil
}

// OpenHeader checks the salt || commitment header (the first HeaderSize bytes
// of header; a whole ciphertext may be passed) against inputKey and context in
// constant time and returns the message key. It returns an error wrapping
// ErrInvalidKeySize, ErrTruncated (header too short) or ErrCommitment.
func OpenHeader(inputKey, context, header []byte) (*MessageKey, error) {
	if len(inputKey) != KeySize {
		return nil, fmt.Errorf("%w: input key is %d bytes, want %d", ErrInvalidKeySize, len(inputKey), KeySize)
	}
	if len(header) < HeaderSize {
		return nil, fmt.Errorf("%w: header is %d bytes, want %d", ErrTruncated, len(header), HeaderSize)
	}
	key, want, err := DeriveKey(inputKey, header[:SaltSize], context)
	if err != nil {
		return nil, err
	}
	ok := subtle.ConstantTimeCompare(want[:], header[SaltSize:HeaderSize]) == 1
	clear(want[:])
	if !ok {
		key.Destroy()
		return nil, ErrCommitment
	}
	return key, nil
}

// Option configures a Writer, Reader or ReaderAt.
type Option func(*options)

type options struct {
	concurrency int
	salt        []byte
	rand        io.Reader
}

// WithConcurrency sets how many goroutines seal or open chunks in parallel.
// n <= 0 means runtime.GOMAXPROCS(0). The default is 1: everything happens on
// the caller's goroutine. Output is byte-identical for every n.
func WithConcurrency(n int) Option {
	return func(o *options) {
		if n <= 0 {
			n = runtime.GOMAXPROCS(0)
		}
		o.concurrency = n
	}
}

// WithSalt fixes the salt of NewWriter. It exists for known-answer tests only:
// a salt must never repeat under one input key. It must be SaltSize bytes.
// Readers and raw mode ignore it.
func WithSalt(salt []byte) Option {
	return func(o *options) { o.salt = append([]byte(nil), salt...) }
}

// WithRand sets the source of the salt of NewWriter; the default is
// crypto/rand.Reader. Readers and raw mode ignore it.
func WithRand(r io.Reader) Option {
	return func(o *options) { o.rand = r }
}

func buildOptions(opts []Option) options {
	o := options{concurrency: 1}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.concurrency < 1 {
		o.concurrency = 1
	}
	return o
}

// newSalt returns the configured or a fresh random salt.
func (o *options) newSalt() ([]byte, error) {
	if o.salt != nil {
		if len(o.salt) != SaltSize {
			return nil, fmt.Errorf("cobblestone: WithSalt: salt is %d bytes, want %d", len(o.salt), SaltSize)
		}
		return o.salt, nil
	}
	salt := make([]byte, SaltSize)
	src := o.rand
	if src == nil {
		src = rand.Reader
	}
	if _, err := io.ReadFull(src, salt); err != nil {
		return nil, fmt.Errorf("cobblestone: generating salt: %w", err)
	}
	return salt, nil
}

// aeadState is the AEAD and base nonce of one message, shared read-only by
// every goroutine working on it.
type aeadState struct {
	aead cipher.AEAD
	base [NonceSize]byte
}

// newAEADState builds the AES-256-GCM instance of key; the AEAD keeps only its
// expanded key schedule, the caller may destroy key afterwards.
func newAEADState(key *MessageKey) (*aeadState, error) {
	// An all-zero key is what a copy of a destroyed MessageKey holds.
	if key == nil || key.m == nil || *key.m == ([messageKeySize]byte{}) {
		return nil, errKeyDestroyed
	}
	block, err := aes.NewCipher(key.m[:KeySize])
	if err != nil {
		return nil, fmt.Errorf("cobblestone: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("cobblestone: %w", err)
	}
	s := &aeadState{aead: aead}
	copy(s.base[:], key.m[KeySize:])
	return s, nil
}

// nonce writes the nonce of chunk idx (< 2^38) into dst: the base nonce XOR
// the big-endian counter in its last five bytes.
func (s *aeadState) nonce(dst *[NonceSize]byte, idx uint64) {
	*dst = s.base
	dst[7] ^= byte(idx >> 32)
	dst[8] ^= byte(idx >> 24)
	dst[9] ^= byte(idx >> 16)
	dst[10] ^= byte(idx >> 8)
	dst[11] ^= byte(idx)
}

// newHeader picks a salt, derives the message key and commitment for
// inputKey and context, builds the AEAD, destroys the derived key, and
// returns the AEAD state and the salt || commitment header.
func newHeader(inputKey, context []byte, o *options) (*aeadState, []byte, error) {
	if len(inputKey) != KeySize {
		return nil, nil, fmt.Errorf("%w: input key is %d bytes, want %d", ErrInvalidKeySize, len(inputKey), KeySize)
	}
	salt, err := o.newSalt()
	if err != nil {
		return nil, nil, err
	}
	key, commitment, err := DeriveKey(inputKey, salt, context)
	if err != nil {
		return nil, nil, err
	}
	defer key.Destroy()
	st, err := newAEADState(key)
	if err != nil {
		return nil, nil, err
	}
	header := make([]byte, 0, HeaderSize)
	header = append(header, salt...)
	header = append(header, commitment[:]...)
	return st, header, nil
}

// openHeader checks a header and returns the AEAD state; the derived key is
// destroyed.
func openHeader(inputKey, context, header []byte) (*aeadState, error) {
	key, err := OpenHeader(inputKey, context, header)
	if err != nil {
		return nil, err
	}
	defer key.Destroy()
	return newAEADState(key)
}
