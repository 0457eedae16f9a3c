package kms_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
)

// instantProvider answers instantly and counts calls.
type instantProvider struct {
	mu    sync.Mutex
	calls int
}

func (p *instantProvider) GenerateDataKey(context.Context, kms.KeyURI, kms.EncryptionContext) (*kms.DataKey, error) {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	return &kms.DataKey{Plaintext: kms.NewSecret(make([]byte, 32)), Ciphertext: []byte("c"), KeyVersion: "1"}, nil
}
func (p *instantProvider) Encrypt(context.Context, kms.KeyURI, *kms.Secret, kms.EncryptionContext) (*kms.Wrapped, error) {
	return nil, errors.New("unused")
}
func (p *instantProvider) Decrypt(context.Context, kms.KeyURI, []byte, kms.EncryptionContext) (*kms.Secret, error) {
	return nil, errors.New("unused")
}

func TestRateLimitPerEndpoint(t *testing.T) {
	p := &instantProvider{}
	c := kms.NewClient(
		kms.WithProvider(kms.SchemeAWS, p),
		kms.WithRateLimit(kms.SchemeAWS, kms.RateLimit{PerSecond: 20, Burst: 5}),
		kms.WithCallTimeout(100*time.Millisecond),
	)
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	a := kms.MustParseKeyURI("awskms://alias/a?region=eu-west-2")
	b := kms.MustParseKeyURI("awskms://alias/b?region=eu-west-2") // same endpoint as a
	other := kms.MustParseKeyURI("awskms://alias/a?region=eu-west-1")

	start := time.Now()
	for i := 0; i < 15; i++ {
		key := a
		if i%2 == 1 {
			key = b
		}
		if _, err := c.GenerateDataKey(context.Background(), key, ec); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// 5 at once, then 10 more at 20/s: about 0.5 s.
	if d := time.Since(start); d < 400*time.Millisecond || d > 2*time.Second {
		t.Errorf("15 calls on one endpoint took %s, want about 500ms", d)
	}
	// Another region is another endpoint, with its own budget.
	start = time.Now()
	for i := 0; i < 5; i++ {
		if _, err := c.GenerateDataKey(context.Background(), other, ec); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("another endpoint waited %s", d)
	}
}

func TestRateLimitRefusesBeyondTheTimeout(t *testing.T) {
	p := &instantProvider{}
	c := kms.NewClient(
		kms.WithProvider(kms.SchemeAzure, p),
		kms.WithRateLimit(kms.SchemeAzure, kms.RateLimit{PerSecond: 1, Burst: 1}),
		kms.WithCallTimeout(50*time.Millisecond),
	)
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	key := kms.MustParseKeyURI("azurekv://v.vault.azure.net/keys/k")
	if _, err := c.GenerateDataKey(context.Background(), key, ec); err != nil {
		t.Fatal(err)
	}
	_, err := c.GenerateDataKey(context.Background(), key, ec)
	if !errors.Is(err, kms.ErrThrottled) || kms.IsEndpointFailure(err) || !kms.IsRateLimited(err) {
		t.Fatalf("second call = %v, want throttled by Keyward's own limiter (and not an endpoint failure)", err)
	}
	if p.calls != 1 || c.Stats().RateLimited != 1 {
		t.Fatalf("provider saw %d calls, rate limited %d", p.calls, c.Stats().RateLimited)
	}
	// The caller's own cancellation is not throttling.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.GenerateDataKey(ctx, key, ec); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call = %v", err)
	}
}

func TestDefaultRateLimits(t *testing.T) {
	d := kms.DefaultRateLimits()
	for _, s := range []string{kms.SchemeAWS, kms.SchemeOCI, kms.SchemeAzure} {
		if d[s].PerSecond <= 0 || d[s].Burst <= 0 {
			t.Errorf("no default limit for %s", s)
		}
	}
	if _, ok := d[kms.SchemeLocal]; ok {
		t.Error("localkms is limited")
	}
}
