package ociemu

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// state is what WithStateFile keeps.
type state struct {
	TenancyOCID   string     `json:"tenancy_ocid"`
	UserOCID      string     `json:"user_ocid"`
	PrivateKeyPEM string     `json:"private_key_pem"`
	Vault         string     `json:"vault"`
	Keys          []keyState `json:"keys"`
}

type keyState struct {
	OCID     string         `json:"ocid"`
	State    string         `json:"state"`
	Versions []versionState `json:"versions"`
}

type versionState struct {
	OCID     string `json:"ocid"`
	Handle   []byte `json:"handle"`
	Material []byte `json:"material"`
}

// loadState replaces the fresh identity and keys of a new emulator with
// those of its state file, if there is one.
func (e *Emulator) loadState() error {
	b, err := os.ReadFile(e.stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ociemu: state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("ociemu: state %s: %w", e.stateFile, err)
	}
	block, _ := pem.Decode([]byte(st.PrivateKeyPEM))
	if block == nil {
		return fmt.Errorf("ociemu: state %s: no private key", e.stateFile)
	}
	priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("ociemu: state %s: %w", e.stateFile, err)
	}
	fp, err := Fingerprint(&priv.PublicKey)
	if err != nil {
		return err
	}
	e.TenancyOCID, e.UserOCID, e.Fingerprint, e.vault = st.TenancyOCID, st.UserOCID, fp, st.Vault
	e.PrivateKeyPEM, e.publicKey = []byte(st.PrivateKeyPEM), &priv.PublicKey
	for _, ks := range st.Keys {
		k := &key{ocid: ks.OCID, state: ks.State}
		for _, vs := range ks.Versions {
			if len(vs.Material) != 32 || len(vs.Handle) != handleSize {
				return fmt.Errorf("ociemu: state %s: malformed version %s", e.stateFile, vs.OCID)
			}
			v := &version{ocid: vs.OCID, material: vs.Material, aead: newAEAD(vs.Material)}
			copy(v.handle[:], vs.Handle)
			k.versions = append(k.versions, v)
		}
		e.keys[k.ocid] = k
	}
	return nil
}

// saveState writes the state file atomically (no-op without one).
func (e *Emulator) saveState() error {
	if e.stateFile == "" {
		return nil
	}
	e.mu.Lock()
	st := state{TenancyOCID: e.TenancyOCID, UserOCID: e.UserOCID, PrivateKeyPEM: string(e.PrivateKeyPEM), Vault: e.vault}
	for _, k := range e.keys {
		ks := keyState{OCID: k.ocid, State: k.state}
		for _, v := range k.versions {
			ks.Versions = append(ks.Versions, versionState{OCID: v.ocid, Handle: v.handle[:], Material: v.material})
		}
		st.Keys = append(st.Keys, ks)
	}
	e.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(e.stateFile), 0o700); err != nil {
		return fmt.Errorf("ociemu: state: %w", err)
	}
	tmp := e.stateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("ociemu: state: %w", err)
	}
	if err := os.Rename(tmp, e.stateFile); err != nil {
		return fmt.Errorf("ociemu: state: %w", err)
	}
	return nil
}

func (e *Emulator) mustSave() {
	if err := e.saveState(); err != nil {
		panic(err)
	}
}
