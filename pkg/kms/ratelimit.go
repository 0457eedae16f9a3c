package kms

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/time/rate"
)

// RateLimit bounds the calls Keyward makes to one KMS endpoint (all tenants
// and keys behind it together), so Keyward stays under the provider's quota
// instead of learning it from throttling errors.
type RateLimit struct {
	// PerSecond is the sustained rate; 0 or less means unlimited.
	PerSecond float64
	// Burst is how many calls may go at once after a quiet period.
	Burst int
}

// DefaultRateLimits are the per-endpoint limits by scheme. Each is well
// under the provider's documented request quota for the operations Keyward
// uses, leaving room for the customer's own use of the key and for other
// Keyward instances (the quota is shared; the limit is per process):
//
//   - awskms, per region (or endpoint override): 1,000/s. AWS KMS's
//     "cryptographic operations (symmetric) request rate" quota, shared by
//     Encrypt, Decrypt and GenerateDataKey, is 5,500/s in the smallest
//     regions and up to 100,000/s in the largest (AWS KMS Developer Guide,
//     "Request quotas").
//   - azurekv, per vault or Managed HSM: 150/s. Key Vault allows 2,000
//     transactions per 10 s per vault for HSM-protected RSA 2048 keys (4,000
//     for software keys) (Azure Key Vault "service limits"); Managed HSM
//     allows more, and a higher limit can be set for it.
//   - ocikms, per vault crypto endpoint: 100/s. OCI Vault's cryptographic
//     operation limits depend on the vault type and are set per tenancy
//     (OCI Vault "service limits"); 100/s is below the lowest published
//     virtual-vault figure we know of. Raise it for dedicated vaults.
//   - localkms: unlimited.
//
// Set WithRateLimit to override per scheme.
func DefaultRateLimits() map[string]RateLimit {
	return map[string]RateLimit{
		SchemeAWS:   {PerSecond: 1000, Burst: 100},
		SchemeAzure: {PerSecond: 150, Burst: 30},
		SchemeOCI:   {PerSecond: 100, Burst: 20},
	}
}

// WithRateLimit sets the per-endpoint limit of a scheme (PerSecond <= 0
// removes it).
func WithRateLimit(scheme string, l RateLimit) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.limits[scheme] = l })
}

// limiters holds one token bucket per endpoint, created on first use.
type limiters struct {
	limits map[string]RateLimit
	mu     sync.Mutex
	byEnd  map[string]*rate.Limiter
}

func (l *limiters) get(key KeyURI) *rate.Limiter {
	lim, ok := l.limits[key.Scheme]
	if !ok || lim.PerSecond <= 0 {
		return nil
	}
	id := key.EndpointID()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.byEnd[id]; ok {
		return r
	}
	burst := lim.Burst
	if burst < 1 {
		burst = 1
	}
	r := rate.NewLimiter(rate.Limit(lim.PerSecond), burst)
	l.byEnd[id] = r
	return r
}

// waitTurn waits for the endpoint's rate limiter, at most the per-call
// timeout. A call that cannot get a turn in time fails as throttled without
// reaching the KMS.
func (c *Client) waitTurn(ctx context.Context, op string, key KeyURI) *Error {
	r := c.limiters.get(key)
	if r == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := r.Wait(wctx); err != nil {
		if ctx.Err() != nil {
			return c.canceledError(op, key, ctx)
		}
		c.stats.limited.Add(1)
		return c.newError(CodeThrottled, op, key, fmt.Errorf(
			"%w for %s (%g calls/s) has no room within %s: the endpoint is saturated",
			ErrRateLimited, key.EndpointID(), float64(r.Limit()), c.timeout))
	}
	return nil
}
