package azurekv_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
)

// Concurrent first calls, through one fresh provider each round, to a Key
// Vault key and a Managed HSM key, and to a missing and a deleted key in
// each: every vault's client must settle on its own vault's token. A Key
// Vault token sent to the Managed HSM (or the reverse) is answered 401,
// which the provider reports as access_denied, and a tenant's key would
// look revoked. Run it under -race.
func TestConcurrentFirstCalls(t *testing.T) {
	e := azureemu.StartT(t)
	deletedRSA, deletedOct := e.CreateRSAKey("acme-kv", "kv-deleted"), e.CreateOctKey("acme-hsm", "hsm-deleted")
	e.DeleteKey(deletedRSA)
	e.DeleteKey(deletedOct)
	present := []kms.KeyURI{e.CreateRSAKey("acme-kv", "kv-key"), e.CreateOctKey("acme-hsm", "hsm-key")}
	absent := []kms.KeyURI{e.MissingVaultKey("acme-kv", "kv-missing"), e.MissingHSMKey("acme-hsm", "hsm-missing"), deletedRSA, deletedOct}
	const rounds, workers = 16, 6
	for round := range rounds {
		p, err := e.Provider()
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		errs := make(chan error, workers*(len(present)+len(absent)))
		var wg sync.WaitGroup
		for _, key := range present {
			for range workers {
				wg.Go(func() {
					<-start
					dk, err := p.GenerateDataKey(t.Context(), key, ec)
					if err != nil {
						errs <- fmt.Errorf("GenerateDataKey(%s) err = %v", key, err)
						return
					}
					defer dk.Destroy()
					pt, err := p.Decrypt(t.Context(), key, dk.Ciphertext, ec)
					if err != nil {
						errs <- fmt.Errorf("Decrypt(%s) err = %v", key, err)
						return
					}
					if !pt.Equal(dk.Plaintext) {
						errs <- fmt.Errorf("Decrypt(%s) returned other bytes", key)
					}
					pt.Destroy()
				})
			}
		}
		for _, key := range absent {
			for range workers {
				wg.Go(func() {
					<-start
					dk, err := p.GenerateDataKey(t.Context(), key, ec)
					if kms.CodeOf(err) != kms.CodeKeyNotFound {
						errs <- fmt.Errorf("GenerateDataKey(%s) err = %v, want %s", key, err, kms.CodeKeyNotFound)
					}
					dk.Destroy()
				})
			}
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if t.Failed() {
			return
		}
	}
}

// A missing or deleted key in a vault whose client holds that vault's
// token answers 404 at once: no new challenge, which would make the client
// ask for another resource's token (azcore's bearer policy keeps one token
// whatever scope it was got for). Names the emulator was never told of
// accept either vault's token.
func TestMissingKeyKeepsToken(t *testing.T) {
	forBoth(t, func(t *testing.T, hsm bool) {
		e, p := newProvider(t)
		create, missing, vault, host := e.CreateRSAKey, e.MissingVaultKey, "acme-kv", "acme-kv.vault.azure.net"
		if hsm {
			create, missing, vault, host = e.CreateOctKey, e.MissingHSMKey, "acme-hsm", "acme-hsm.managedhsm.azure.net"
		}
		key, deleted := create(vault, "k"), create(vault, "deleted")
		e.DeleteKey(deleted)
		roundTrip(t, p, key)
		challenges, tokens := e.Challenges(), e.TokensIssued()
		for _, u := range []kms.KeyURI{missing(vault, "missing"), deleted,
			kms.MustParseKeyURI("azurekv://" + host + "/keys/never-named?endpoint=" + e.URL)} {
			dk, err := p.GenerateDataKey(t.Context(), u, ec)
			dk.Destroy()
			wantCode(t, "GenerateDataKey("+u.KeyID+")", err, kms.CodeKeyNotFound)
		}
		roundTrip(t, p, key)
		if e.Challenges() != challenges || e.TokensIssued() != tokens {
			t.Errorf("missing keys cost %d challenges and %d tokens, want none", e.Challenges()-challenges, e.TokensIssued()-tokens)
		}
	})
}
