package azurekv_test

import (
	"testing"

	"github.com/keyward/keyward/pkg/kms"
)

// Benchmarks through the emulator over TLS (loopback): the provider's own
// cost plus azcore's pipeline, TLS, JSON and the emulator's real RSA-OAEP
// (RSA 2048) or AES key wrap. They measure Keyward's side; a real vault
// adds the network round trip.
func benchmarkKeys(b *testing.B) map[string]func() (kms.Provider, kms.KeyURI) {
	return map[string]func() (kms.Provider, kms.KeyURI){
		"KeyVaultRSA": func() (kms.Provider, kms.KeyURI) {
			e, p := newProvider(b)
			return p, e.CreateRSAKey("bench-kv", "k")
		},
		"ManagedHSMOct": func() (kms.Provider, kms.KeyURI) {
			e, p := newProvider(b)
			return p, e.CreateOctKey("bench-hsm", "k")
		},
	}
}

func BenchmarkGenerateDataKey(b *testing.B) {
	for name, mk := range benchmarkKeys(b) {
		b.Run(name, func(b *testing.B) {
			p, key := mk()
			ctx := b.Context()
			for b.Loop() {
				dk, err := p.GenerateDataKey(ctx, key, ec)
				if err != nil {
					b.Fatal(err)
				}
				dk.Destroy()
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for name, mk := range benchmarkKeys(b) {
		b.Run(name, func(b *testing.B) {
			p, key := mk()
			ctx := b.Context()
			dk, err := p.GenerateDataKey(ctx, key, ec)
			if err != nil {
				b.Fatal(err)
			}
			defer dk.Destroy()
			for b.Loop() {
				pt, err := p.Decrypt(ctx, key, dk.Ciphertext, ec)
				if err != nil {
					b.Fatal(err)
				}
				pt.Destroy()
			}
		})
	}
}

// Many goroutines on one provider: one cached azkeys.Client per vault.
func BenchmarkDecryptParallel(b *testing.B) {
	for name, mk := range benchmarkKeys(b) {
		b.Run(name, func(b *testing.B) {
			p, key := mk()
			ctx := b.Context()
			dk, err := p.GenerateDataKey(ctx, key, ec)
			if err != nil {
				b.Fatal(err)
			}
			defer dk.Destroy()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					pt, err := p.Decrypt(ctx, key, dk.Ciphertext, ec)
					if err != nil {
						b.Error(err)
						return
					}
					pt.Destroy()
				}
			})
		})
	}
}
