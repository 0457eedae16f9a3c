package ocikms_test

import (
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
)

// The benchmarks measure one call through the provider, the OCI SDK
// (request building, RSA-SHA256 signing) and the emulator over loopback
// HTTP (signature verification, AES-256-GCM): the latency Keyward adds
// around a real OCI Vault round trip, not OCI's own latency.

func benchSetup(b *testing.B) (*ociemu.Emulator, kms.Provider, kms.KeyURI) {
	b.Helper()
	e := ociemu.StartT(b)
	p, err := e.Provider()
	if err != nil {
		b.Fatal(err)
	}
	return e, p, e.CreateKey()
}

func BenchmarkGenerateDataKey(b *testing.B) {
	_, p, key := benchSetup(b)
	ctx := b.Context()
	for b.Loop() {
		dk, err := p.GenerateDataKey(ctx, key, ec)
		if err != nil {
			b.Fatal(err)
		}
		dk.Destroy()
	}
}

func BenchmarkEncrypt(b *testing.B) {
	_, p, key := benchSetup(b)
	ctx := b.Context()
	pt := kms.NewSecret(make([]byte, kms.DataKeySize))
	for b.Loop() {
		if _, err := p.Encrypt(ctx, key, pt, ec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	_, p, key := benchSetup(b)
	ctx := b.Context()
	dk, err := p.GenerateDataKey(ctx, key, ec)
	if err != nil {
		b.Fatal(err)
	}
	defer dk.Destroy()
	for b.Loop() {
		s, err := p.Decrypt(ctx, key, dk.Ciphertext, ec)
		if err != nil {
			b.Fatal(err)
		}
		s.Destroy()
	}
}

// BenchmarkProviderDecryptParallel: concurrent calls, as the workers make
// them (one crypto client and connection pool per endpoint).
func BenchmarkProviderDecryptParallel(b *testing.B) {
	_, p, key := benchSetup(b)
	dk, err := p.GenerateDataKey(b.Context(), key, ec)
	if err != nil {
		b.Fatal(err)
	}
	defer dk.Destroy()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := p.Decrypt(b.Context(), key, dk.Ciphertext, ec)
			if err != nil {
				b.Error(err)
				return
			}
			s.Destroy()
		}
	})
}

// BenchmarkClientDecryptParallel: the same through kms.Client, with its
// per-endpoint rate limit lifted (by default 100/s per OCI crypto endpoint,
// which would be all this measured).
func BenchmarkClientDecryptParallel(b *testing.B) {
	_, p, key := benchSetup(b)
	c := kms.NewClient(kms.WithProvider(kms.SchemeOCI, p), kms.WithRateLimit(kms.SchemeOCI, kms.RateLimit{}))
	dk, err := c.GenerateDataKey(b.Context(), key, ec)
	if err != nil {
		b.Fatal(err)
	}
	defer dk.Destroy()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := c.Decrypt(b.Context(), key, dk.Ciphertext, ec)
			if err != nil {
				b.Error(err)
				return
			}
			s.Destroy()
		}
	})
}
