package azureemu

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
)

type state struct {
	TenantID       string     `json:"tenant_id"`
	ClientID       string     `json:"client_id"`
	ClientSecret   string     `json:"client_secret"`
	FederatedToken string     `json:"federated_token"`
	Keys           []keyState `json:"keys"`
	// Vaults is the vault host of every key name told of, deleted and
	// missing ones included (lower-case name → host).
	Vaults map[string]string `json:"vaults,omitempty"`
}

type keyState struct {
	Vault    string         `json:"vault"`
	Name     string         `json:"name"`
	HSM      bool           `json:"hsm"`
	Versions []versionState `json:"versions"`
}

type versionState struct {
	ID      string `json:"id"`
	Enabled bool   `json:"enabled"`
	RSA     []byte `json:"rsa_pkcs1,omitempty"`
	Oct     []byte `json:"oct,omitempty"`
}

// loadState replaces the fresh application and keys of a new emulator with
// those of its state file, if there is one.
func (e *Emulator) loadState() error {
	b, err := os.ReadFile(e.opts.stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("azureemu: state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("azureemu: state %s: %w", e.opts.stateFile, err)
	}
	e.TenantID, e.ClientID, e.ClientSecret, e.FederatedToken = st.TenantID, st.ClientID, st.ClientSecret, st.FederatedToken
	e.opts.tenantID, e.opts.clientID, e.opts.clientSecret = st.TenantID, st.ClientID, st.ClientSecret
	for _, ks := range st.Keys {
		k := &key{vault: ks.Vault, name: ks.Name, hsm: ks.HSM}
		for _, vs := range ks.Versions {
			v := &keyVersion{id: vs.ID, enabled: vs.Enabled}
			if ks.HSM {
				if len(vs.Oct) != 32 {
					return fmt.Errorf("azureemu: state %s: malformed oct key %s", e.opts.stateFile, ks.Name)
				}
				v.oct = vs.Oct
			} else {
				if v.rsa, err = x509.ParsePKCS1PrivateKey(vs.RSA); err != nil {
					return fmt.Errorf("azureemu: state %s: key %s: %w", e.opts.stateFile, ks.Name, err)
				}
			}
			k.versions = append(k.versions, v)
		}
		if len(k.versions) == 0 {
			return fmt.Errorf("azureemu: state %s: key %s has no version", e.opts.stateFile, ks.Name)
		}
		e.keys[strings.ToLower(k.name)] = k
		e.vaults[strings.ToLower(k.name)] = k.vault
	}
	for name, host := range st.Vaults {
		if _, ok := e.vaults[strings.ToLower(name)]; !ok {
			e.vaults[strings.ToLower(name)] = host
		}
	}
	return nil
}

// saveState writes the state file atomically (no-op without one).
func (e *Emulator) saveState() error {
	if e.opts.stateFile == "" {
		return nil
	}
	e.mu.Lock()
	st := state{TenantID: e.TenantID, ClientID: e.ClientID, ClientSecret: e.ClientSecret, FederatedToken: e.FederatedToken,
		Vaults: maps.Clone(e.vaults)}
	for _, k := range e.keys {
		ks := keyState{Vault: k.vault, Name: k.name, HSM: k.hsm}
		for _, v := range k.versions {
			vs := versionState{ID: v.id, Enabled: v.enabled, Oct: v.oct}
			if v.rsa != nil {
				vs.RSA = x509.MarshalPKCS1PrivateKey(v.rsa)
			}
			ks.Versions = append(ks.Versions, vs)
		}
		st.Keys = append(st.Keys, ks)
	}
	e.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(e.opts.stateFile), 0o700); err != nil {
		return fmt.Errorf("azureemu: state: %w", err)
	}
	tmp := e.opts.stateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("azureemu: state: %w", err)
	}
	return os.Rename(tmp, e.opts.stateFile)
}

func (e *Emulator) mustSave() {
	if err := e.saveState(); err != nil {
		panic(err)
	}
}
