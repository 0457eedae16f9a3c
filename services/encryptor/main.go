// Command encryptor is the Keyward encryptor worker: AssetCreated in,
// ciphertext in KW_VAULT and AssetEncrypted / AssetRejected out, plus the key
// broker. Configuration: flags or environment (encryptor -h).
package main

import (
	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/encryptor/encryptor"
)

func main() { svc.Exec("encryptor", encryptor.Main) }
