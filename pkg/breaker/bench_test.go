package breaker_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/kms"
)

// BenchmarkAdmit measures the guard's overhead per KMS call: Admit and done,
// from parallel goroutines, on one endpoint (every call contends for one
// breaker), on 16 endpoints, and refusals by an open breaker.
func BenchmarkAdmit(b *testing.B) {
	one := []kms.KeyURI{kms.MustParseKeyURI("awskms://alias/k?region=eu-west-2")}
	var many []kms.KeyURI
	for i := range 16 {
		many = append(many, kms.MustParseKeyURI(fmt.Sprintf("azurekv://vault%d.vault.azure.net/keys/k", i)))
	}
	for _, bc := range []struct {
		name string
		keys []kms.KeyURI
	}{{"closed/1 endpoint", one}, {"closed/16 endpoints", many}} {
		b.Run(bc.name, func(b *testing.B) {
			set := breaker.New()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					done, err := set.Admit(bc.keys[i%len(bc.keys)])
					if err != nil {
						b.Fatal(err)
					}
					done(nil)
					i++
				}
			})
		})
	}
	b.Run("open/refusal", func(b *testing.B) {
		set := breaker.New()
		failure := &kms.Error{Code: kms.CodeEndpointUnreachable}
		for range breaker.DefaultConsecutiveFailures {
			done, _ := set.Admit(one[0])
			done(failure)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := set.Admit(one[0]); err == nil {
					b.Fatal("admitted by an open breaker")
				}
			}
		})
	})
}

// instant is a provider that answers at once.
type instant struct{}

func (instant) GenerateDataKey(context.Context, kms.KeyURI, kms.EncryptionContext) (*kms.DataKey, error) {
	return &kms.DataKey{Plaintext: kms.NewSecret(make([]byte, kms.DataKeySize)), Ciphertext: []byte("c"), KeyVersion: "1"}, nil
}
func (instant) Encrypt(context.Context, kms.KeyURI, *kms.Secret, kms.EncryptionContext) (*kms.Wrapped, error) {
	return &kms.Wrapped{Ciphertext: []byte("c"), KeyVersion: "1"}, nil
}
func (instant) Decrypt(context.Context, kms.KeyURI, []byte, kms.EncryptionContext) (*kms.Secret, error) {
	return kms.NewSecret(make([]byte, kms.DataKeySize)), nil
}

// BenchmarkClientGuard puts the guard's overhead next to the rest of a
// kms.Client call (validation, timeout, goroutine, span, metrics) with a
// provider that answers at once.
func BenchmarkClientGuard(b *testing.B) {
	key := kms.MustParseKeyURI("awskms://alias/k?region=eu-west-2")
	for name, opts := range map[string][]kms.ClientOption{
		"no guard": nil,
		"guard":    {kms.WithGuard(breaker.New())},
	} {
		b.Run(name, func(b *testing.B) {
			c := kms.NewClient(append(opts, kms.WithProvider(kms.SchemeAWS, instant{}),
				kms.WithRateLimit(kms.SchemeAWS, kms.RateLimit{}))...)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					dk, err := c.GenerateDataKey(context.Background(), key, ec)
					if err != nil {
						b.Fatal(err)
					}
					dk.Destroy()
				}
			})
		})
	}
}
