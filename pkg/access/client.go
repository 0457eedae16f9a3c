package access

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// ClientOptions are the nats.go options of a connection made with the
// credentials file at path: the credentials, and the inbox prefix of the
// identity they name (the only inbox its permissions let it read).
func ClientOptions(path string) ([]nats.Option, error) {
	if path == "" {
		return nil, nil
	}
	name, err := CredsName(path)
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.UserCredentials(path), nats.CustomInboxPrefix(InboxPrefix(name))}, nil
}

// CredsName reads the identity name from a credentials file's JWT.
func CredsName(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return "", fmt.Errorf("NATS credentials %s: not a credentials file (want the output of keyward access issue): %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return "", fmt.Errorf("NATS credentials %s: %w", path, err)
	}
	if uc.Name == "" {
		return uc.Subject, nil
	}
	return uc.Name, nil
}

// PushAccount sends an account JWT to every server of the cluster over the
// system account ($SYS.REQ.CLAIMS.UPDATE), as `nsc push` does: a
// revocation in it disconnects the revoked users at once. sys must be a
// connection of the system identity.
func PushAccount(ctx context.Context, sys *nats.Conn, accountJWT string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := sys.RequestWithContext(ctx, "$SYS.REQ.CLAIMS.UPDATE", []byte(accountJWT))
	if err != nil {
		return fmt.Errorf("pushing the account to NATS: %w", err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err == nil && resp.Error != nil {
		return fmt.Errorf("pushing the account to NATS: %s (%d)", resp.Error.Description, resp.Error.Code)
	}
	return nil
}
