// Package accesstest holds test helpers for deployments that run with
// pkg/access's generated configuration. It does not import pkg/access, so
// that package's own tests can use it too.
package accesstest

import (
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// ObserverCredentials signs, with an account's key pair, a test-only user
// of that account that may publish and subscribe to anything: a test's
// eyes on a deployment whose every real identity is least-privilege. No
// product code issues such a user; anyone holding the account's seed can.
func ObserverCredentials(account nkeys.KeyPair) (userJWT, seed string, err error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return "", "", err
	}
	pub, err := user.PublicKey()
	if err != nil {
		return "", "", err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = "test-observer"
	uc.Pub.Allow.Add(">")
	uc.Sub.Allow.Add(">")
	if userJWT, err = uc.Encode(account); err != nil {
		return "", "", err
	}
	s, err := user.Seed()
	return userJWT, string(s), err
}
