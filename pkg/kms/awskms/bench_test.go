package awskms_test

import (
	"testing"
)

// BenchmarkGenerateDataKey is one GenerateDataKey call through the real SDK
// over loopback HTTP to the in-process emulator (SigV4 signing and checking
// included): the provider's own overhead plus the emulator's.
func BenchmarkGenerateDataKey(b *testing.B) {
	r := newRig(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		dk, err := r.p.GenerateDataKey(ctx, r.a, ec)
		if err != nil {
			b.Fatal(err)
		}
		dk.Destroy()
	}
}

// BenchmarkDecrypt is one Decrypt call, as BenchmarkGenerateDataKey.
func BenchmarkDecrypt(b *testing.B) {
	r := newRig(b)
	ctx := b.Context()
	dk, err := r.p.GenerateDataKey(ctx, r.a, ec)
	if err != nil {
		b.Fatal(err)
	}
	defer dk.Destroy()
	b.ReportAllocs()
	for b.Loop() {
		pt, err := r.p.Decrypt(ctx, r.a, dk.Ciphertext, ec)
		if err != nil {
			b.Fatal(err)
		}
		pt.Destroy()
	}
}

// BenchmarkGenerateDataKeyParallel measures throughput with concurrent
// callers of the provider (a kms.Client would add its per-endpoint rate
// limit, which dominates).
func BenchmarkGenerateDataKeyParallel(b *testing.B) {
	r := newRig(b)
	ctx := b.Context()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			dk, err := r.p.GenerateDataKey(ctx, r.a, ec)
			if err != nil {
				b.Error(err)
				return
			}
			dk.Destroy()
		}
	})
}
