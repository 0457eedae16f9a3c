package vault

// Object metadata keys written with every ciphertext in KW_VAULT, so a crash
// between storing an object and recording it can be recovered from the
// object alone. The encryptor writes them with a new ciphertext; the
// re-encryptor writes them again (same event, coverage, size and encryption
// time; the new mode) when it replaces one, plus MetaReencryptedAt and
// MetaJob.
const (
	// MetaEvent is the id of the AssetCreated event the object was made for.
	MetaEvent = "keyward-event"
	// MetaMode is the mode the object is encrypted under (customer,
	// fallback, platform).
	MetaMode = "keyward-mode"
	// MetaCoverage is the asset's coverage (tenant.Coverage).
	MetaCoverage = "keyward-coverage"
	// MetaService is the asset's service.
	MetaService = "keyward-service"
	// MetaSize is the plaintext size in bytes, in decimal.
	MetaSize = "keyward-size"
	// MetaEncryptedAt is when the asset was first encrypted (RFC 3339, UTC).
	MetaEncryptedAt = "keyward-encrypted-at"
	// MetaReencryptedAt is when the object was last re-encrypted or
	// rewrapped (RFC 3339, UTC); absent on an object never replaced.
	MetaReencryptedAt = "keyward-reencrypted-at"
	// MetaJob names the re-encryption job that wrote the object.
	MetaJob = "keyward-job"
)
