package breaker_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/kms"
)

// down is a provider whose endpoint refuses every connection.
type down struct{}

func (down) GenerateDataKey(context.Context, kms.KeyURI, kms.EncryptionContext) (*kms.DataKey, error) {
	return nil, &kms.Error{Code: kms.CodeEndpointUnreachable, Err: errors.New("connection refused")}
}
func (down) Encrypt(context.Context, kms.KeyURI, *kms.Secret, kms.EncryptionContext) (*kms.Wrapped, error) {
	return nil, &kms.Error{Code: kms.CodeEndpointUnreachable, Err: errors.New("connection refused")}
}
func (down) Decrypt(context.Context, kms.KeyURI, []byte, kms.EncryptionContext) (*kms.Secret, error) {
	return nil, &kms.Error{Code: kms.CodeEndpointUnreachable, Err: errors.New("connection refused")}
}

// A Set guards a kms.Client: after 5 endpoint failures in a row the
// endpoint's breaker opens, and calls fail at once without reaching it.
func Example() {
	set := breaker.New(breaker.WithOnStateChange(func(c breaker.Change) {
		fmt.Printf("breaker %s: %s → %s\n", c.Endpoint, c.From, c.To)
	}))
	client := kms.NewClient(kms.WithProvider(kms.SchemeAWS, down{}), kms.WithGuard(set))
	key := kms.MustParseKeyURI("awskms://alias/acme?region=eu-west-2")
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	for i := 1; i <= 6; i++ {
		_, err := client.GenerateDataKey(context.Background(), key, ec)
		fmt.Println(i, kms.CodeOf(err), "circuit open:", kms.IsCircuitOpen(err))
	}
	fmt.Println(set.States())
	fmt.Println("refused:", client.Stats().CircuitOpen)
	// Output:
	// 1 endpoint_unreachable circuit open: false
	// 2 endpoint_unreachable circuit open: false
	// 3 endpoint_unreachable circuit open: false
	// 4 endpoint_unreachable circuit open: false
	// breaker awskms:eu-west-2: closed → open
	// 5 endpoint_unreachable circuit open: false
	// 6 endpoint_unreachable circuit open: true
	// map[awskms:eu-west-2:open]
	// refused: 1
}
