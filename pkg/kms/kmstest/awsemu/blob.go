package awsemu

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Ciphertext blobs.
//
// local-kms's blob is u8 len(ident) || ident || u32le backing-key version ||
// nonce || sealed, where ident is the key ARN in ASCII and is not
// authenticated: Decrypt with a KeyId ignores it. AWS's blobs name the key in
// binary and are refused when they name another key than the KeyId sent. The
// emulator therefore hands out
//
//	0x01 || key id (16-byte UUID) || u32le backing-key version || nonce || sealed
//
// turning it back into local-kms's form on the way in, and refuses a Decrypt
// whose blob names another key than the one that decrypted it
// (IncorrectKeyException), so a modified key reference is caught as AWS
// catches it.
const blobVersion = 0x01

// internalKeyARNPrefix starts the ARN of every key in local-kms's database.
const internalKeyARNPrefix = "arn:aws:kms:" + internalRegion + ":" + internalAccount + ":key/"

var errBadBlob = errors.New("not an emulated AWS KMS ciphertext")

// wrapBlob turns local-kms's blob into the emulated form.
func wrapBlob(b []byte) ([]byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return nil, errors.New("local-kms returned a malformed ciphertext")
	}
	ident, rest := string(b[1:1+int(b[0])]), b[1+int(b[0]):]
	id, ok := strings.CutPrefix(ident, internalKeyARNPrefix)
	raw, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
	if !ok || err != nil || len(raw) != 16 || len(id) != 36 {
		return nil, fmt.Errorf("local-kms returned a ciphertext of key %q, not a UUID key", ident)
	}
	out := make([]byte, 0, 1+16+len(rest))
	out = append(out, blobVersion)
	out = append(out, raw...)
	return append(out, rest...), nil
}

// unwrapBlob turns an emulated blob back into local-kms's form and returns
// the (internal) ARN of the key it names.
func unwrapBlob(b []byte) (local []byte, keyARN string, err error) {
	if len(b) < 1+16+4+1 || b[0] != blobVersion {
		return nil, "", errBadBlob
	}
	h := hex.EncodeToString(b[1:17])
	keyARN = internalKeyARNPrefix + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	local = make([]byte, 0, 1+len(keyARN)+len(b)-17)
	local = append(local, byte(len(keyARN)))
	local = append(local, keyARN...)
	return append(local, b[17:]...), keyARN, nil
}

// mapBlob applies fn to the CiphertextBlob field of a JSON object, if it
// has one, and returns the re-encoded object.
func mapBlob(body []byte, fn func([]byte) ([]byte, error)) ([]byte, error) {
	if !strings.Contains(string(body), `"CiphertextBlob"`) {
		return body, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return body, nil // not an object: leave it to local-kms to refuse
	}
	raw, ok := m["CiphertextBlob"]
	if !ok {
		return body, nil
	}
	var blob []byte
	if err := json.Unmarshal(raw, &blob); err != nil {
		return nil, errBadBlob
	}
	blob, err := fn(blob)
	if err != nil {
		return nil, err
	}
	if m["CiphertextBlob"], err = json.Marshal(blob); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}
