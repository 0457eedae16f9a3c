package azurekv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/pkg/kms"
)

// Ciphertext format constants (see the package documentation).
const (
	// Magic starts every azurekv ciphertext.
	Magic = "KWAZ"
	// FormatVersion is the only format version written and read.
	FormatVersion = 1

	algIDRSAOAEP256 = 1
	algIDA256KW     = 2

	headerFixedLen = len(Magic) + 1 + 1 + 2 // magic, version, algorithm, kid length
	maxKIDLen      = 512                    // real kids are under 250 bytes
	maxWrappedLen  = 8192                   // RSA-4096 wraps to 512 bytes; A256KW to len+8
	versionLen     = 32                     // Key Vault versions: 32 lowercase hex digits
)

// header is a parsed ciphertext: the algorithm and key identifier that
// wrapped, and the wrapped value.
type header struct {
	alg     azkeys.EncryptionAlgorithm
	kid     string
	host    string // from kid: vault host (maybe with a port)
	name    string // from kid: key name
	version string // from kid: key version
	wrapped []byte // aliases the ciphertext
}

// names reports whether the kid in h names key (any version).
func (h header) names(key kms.KeyURI) bool { return sameKey(key, h.host, h.name) }

// appendCiphertext appends the ciphertext of wrapped (made by kid with alg)
// to dst:
//
//	"KWAZ" || u8 format version (1) || u8 algorithm (1 = RSA-OAEP-256, 2 = A256KW)
//	       || u16 big-endian len(kid) || kid || wrapped value
func appendCiphertext(dst []byte, alg azkeys.EncryptionAlgorithm, kid string, wrapped []byte) ([]byte, error) {
	var id byte
	switch alg {
	case AlgorithmRSAOAEP256:
		id = algIDRSAOAEP256
	case AlgorithmA256KW:
		id = algIDA256KW
	default:
		return nil, fmt.Errorf("cannot record algorithm %q", alg)
	}
	if len(kid) == 0 || len(kid) > maxKIDLen {
		return nil, fmt.Errorf("kid is %d bytes, want 1 to %d", len(kid), maxKIDLen)
	}
	dst = append(dst, Magic...)
	dst = append(dst, FormatVersion, id)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(kid)))
	dst = append(dst, kid...)
	return append(dst, wrapped...), nil
}

// parseCiphertext parses a ciphertext made by appendCiphertext. Its errors
// describe what is wrong without quoting the input.
func parseCiphertext(ct []byte) (header, error) {
	if len(ct) < headerFixedLen || string(ct[:len(Magic)]) != Magic {
		return header{}, errors.New("not an azurekv ciphertext (bad magic)")
	}
	if v := ct[len(Magic)]; v != FormatVersion {
		return header{}, fmt.Errorf("unknown ciphertext format version %d", v)
	}
	var h header
	switch ct[len(Magic)+1] {
	case algIDRSAOAEP256:
		h.alg = AlgorithmRSAOAEP256
	case algIDA256KW:
		h.alg = AlgorithmA256KW
	default:
		return header{}, fmt.Errorf("unknown algorithm id %d", ct[len(Magic)+1])
	}
	n := int(binary.BigEndian.Uint16(ct[len(Magic)+2:]))
	rest := ct[headerFixedLen:]
	if n == 0 || n > maxKIDLen || len(rest) < n {
		return header{}, errors.New("truncated or malformed key identifier")
	}
	h.kid = string(rest[:n])
	h.wrapped = rest[n:]
	var err error
	if h.host, h.name, h.version, err = parseKID(h.kid); err != nil {
		return header{}, err
	}
	switch {
	case len(h.wrapped) == 0:
		return header{}, errors.New("no wrapped value")
	case len(h.wrapped) > maxWrappedLen:
		return header{}, fmt.Errorf("wrapped value is %d bytes, at most %d allowed", len(h.wrapped), maxWrappedLen)
	case h.alg == AlgorithmA256KW && (len(h.wrapped) < 64 || len(h.wrapped)%8 != 0):
		return header{}, fmt.Errorf("A256KW value is %d bytes, not a multiple of 8 of at least 64", len(h.wrapped))
	}
	return h, nil
}

// parseKID splits a Key Vault key identifier,
// https://<host>/keys/<name>/<version>, checking every part strictly: a
// host of letters, digits, '-', '.' and an optional port; a name of 1-127
// letters, digits and '-'; a version of 32 lowercase hex digits.
func parseKID(kid string) (host, name, version string, err error) {
	bad := func(what string) (string, string, string, error) {
		return "", "", "", fmt.Errorf("key identifier: %s", what)
	}
	rest, ok := strings.CutPrefix(kid, "https://")
	if !ok {
		return bad("not an https URL")
	}
	host, path, ok := strings.Cut(rest, "/")
	if !ok || !validHost(host) {
		return bad("invalid host")
	}
	parts := strings.Split(path, "/")
	if len(parts) != 3 || parts[0] != "keys" {
		return bad("path is not /keys/<name>/<version>")
	}
	name, version = parts[1], parts[2]
	if !validName(name) {
		return bad("invalid key name")
	}
	if !validVersion(version) {
		return bad("invalid key version")
	}
	return host, name, version, nil
}

func validHost(h string) bool {
	name, port, hasPort := strings.Cut(h, ":")
	if name == "" || len(name) > 253 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	if hasPort {
		if port == "" || len(port) > 5 {
			return false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return false
			}
		}
	}
	return true
}

func validName(n string) bool {
	if n == "" || len(n) > 127 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validVersion(v string) bool {
	if len(v) != versionLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
