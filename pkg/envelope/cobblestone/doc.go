// Package cobblestone implements c2sp.org/chunked-encryption in its
// Cobblestone-256 instantiation: HKDF-Expand with SHA-512 and AES-256-GCM,
// 16 KiB chunks, a 24-byte salt and a 32-byte key commitment. It encrypts a
// message of up to 4 PiB - 1 byte with authenticated streaming encryption and
// decryption and authenticated random access, under an input key that may
// encrypt many messages (each gets a fresh random salt). In Keyward the input
// key is a cached, KMS-wrapped seed and the context names tenant and asset.
//
// # Key derivation
//
// For each message
//
//	key || base nonce || commitment = HKDF-Expand(SHA-512, prk = input key,
//	    info = "c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM" || 0x00 || salt || context)
//
// gives a 32-byte AES-256-GCM key, a 12-byte base nonce and a 32-byte
// commitment. The commitment is checked (in constant time) before any chunk is
// decrypted, so a wrong input key or a wrong context fails up front with
// ErrCommitment instead of as an authentication failure, and a ciphertext
// cannot be made to decrypt under two keys.
//
// # Ciphertext layout
//
//	salt (24) || commitment (32) || chunk 0 || chunk 1 || ... || final chunk
//
// Every chunk but the last carries exactly ChunkSize (16384) plaintext bytes
// and is EncryptedChunkSize (16400) bytes long; the final chunk is shorter
// than ChunkSize and may be empty (TagSize bytes), so each plaintext length has
// exactly one ciphertext length (CiphertextSize, PlaintextSize) and the end of
// the message is authenticated. Chunk i is sealed with AES-256-GCM, empty AAD,
// and the nonce base nonce XOR i (big-endian, i < 2^38). Plaintext byte n is
// in chunk n/16384, which starts at ciphertext offset 56 + (n/16384)×16400.
//
// Raw mode (the spec's appendix) drops the header: NewRawWriter, NewRawReader
// and NewRawReaderAt take a MessageKey (AEAD key || base nonce) instead of the
// input key. It is meant for a reader that received one message's key from a
// key broker which already checked the commitment (OpenHeader); MessageKey
// cannot be printed or logged, and Destroy zeroes it.
//
// # Errors
//
// Failures caused by keys or data wrap exactly one sentinel, to be classified
// with errors.Is; I/O errors of the underlying reader or writer are wrapped
// and passed through:
//
//   - ErrInvalidKeySize: the input key is not KeySize bytes (or a message key
//     not 44 bytes). Returned by the constructors.
//   - ErrCommitment: wrong input key, wrong context, or a modified salt or
//     commitment. Returned by NewReader, NewReaderAt and OpenHeader.
//   - ErrTruncated: a length no message has: a short header, no chunk at all,
//     a missing short final chunk, or a final piece shorter than a tag.
//     NewReaderAt and PlaintextSize detect it from the length alone; a stream
//     detects it at its end.
//   - ErrAuthentication: a chunk failed to authenticate: it was modified,
//     reordered, swapped or duplicated, or the message was cut or extended to
//     a length that looks valid (a full chunk cut in its middle is
//     indistinguishable from a modified final chunk; garbage appended after
//     the final chunk makes that chunk, or a later one, fail).
//   - ErrTooLarge: the chunk counter would reach 2^38 (MaxPlaintextSize).
//
// A Reader releases only authenticated plaintext, chunk by chunk: on a bad
// message it may first return the valid prefix (whole chunks), then an error,
// and it keeps returning that error. A ReaderAt zeroes p past the valid
// prefix when it fails. io.EOF is returned only once the final chunk has
// authenticated, so a truncated message never looks complete.
//
// # Memory and concurrency
//
// A Writer or Reader buffers one chunk with the default concurrency of 1. With
// WithConcurrency(n), n > 1, chunks are handled in batches of 16 (256 KiB):
// up to 2n batches are in flight, each sealed or opened by its own goroutine
// (the caller's goroutine works on batches no goroutine has started yet while
// it waits), and results are written or returned strictly in order, so the
// output is byte-identical for every n. Memory is then about (2n+1) × 256 KiB
// per stream, independent of the message size; buffers are recycled across
// streams. Writer.Write copies chunks into its batches, except that from a
// large slice it seals all but the last 2n batches' worth straight from the
// caller's memory and waits for those before returning; Writer.ReadFrom
// reads straight into the batches. Reader reads ahead at most 2n batches. ReaderAt decrypts only the chunks a range
// overlaps (one 16 KiB buffer per goroutine), splitting a multi-chunk range
// among up to n goroutines; it is safe for concurrent use and authenticates
// the message length (Size) once, when asked or when a read reaches the end.
//
// Writers and Readers are not safe for concurrent use. A Writer keeps only
// the AES key schedule and the base nonce; the input key is not retained and
// derived key material is zeroed.
package cobblestone
