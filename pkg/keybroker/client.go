package keybroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/vault"
)

// Client asks the key broker for asset keys.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
	retries int
}

// ClientOption tunes a Client.
type ClientOption func(*Client)

// WithTimeout bounds one request (default 10s: a cold KMS call included).
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// WithRetries sets how often a retryable refusal is retried (default 5,
// with backoff from 100 ms): covers a broker whose ledger has not yet seen a
// just-encrypted asset.
func WithRetries(n int) ClientOption { return func(c *Client) { c.retries = n } }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn, opts ...ClientOption) *Client {
	c := &Client{nc: nc, timeout: 10 * time.Second, retries: 5}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Key asks for the key of tenantID/assetID whose ciphertext starts with
// prefix. Errors from the broker are *Error.
func (c *Client) Key(ctx context.Context, tenantID, assetID string, prefix *envelope.Prefix) (*cobblestone.MessageKey, *UnwrapResponse, error) {
	if err := events.ValidateTenantID(tenantID); err != nil {
		return nil, nil, err
	}
	if err := events.ValidateAssetID(assetID); err != nil {
		return nil, nil, err
	}
	raw := make([]byte, 0, prefix.Len())
	raw = append(append(raw, prefix.RawHeader...), prefix.Payload...)
	delay := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		rcpt, err := NewRecipient()
		if err != nil {
			return nil, nil, err
		}
		resp, err := c.request(ctx, UnwrapRequest{TenantID: tenantID, AssetID: assetID, Prefix: raw, RecipientPublicKey: rcpt.PublicKey()})
		if err == nil {
			key, oerr := rcpt.Open(resp.SealedKey, tenantID, assetID)
			return key, resp, oerr
		}
		var be *Error
		if !errors.As(err, &be) || !be.Retryable() || attempt >= c.retries {
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (c *Client) request(ctx context.Context, req UnwrapRequest) (*UnwrapResponse, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	msg, err := c.nc.RequestWithContext(rctx, events.SubjectKeyUnwrap(req.TenantID), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, &Error{Code: CodeKeyUnavailable, Message: "no key broker is running (is the encryptor up?)"}
	}
	if err != nil {
		return nil, fmt.Errorf("key broker request for %s/%s: %w", req.TenantID, req.AssetID, err)
	}
	var resp UnwrapResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("key broker sent an undecodable reply: %w", err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	if resp.Suite != Suite || len(resp.SealedKey) == 0 {
		return nil, fmt.Errorf("key broker reply uses suite %q, want %q", resp.Suite, Suite)
	}
	return &resp, nil
}

// Asset is an asset opened for reading: its plaintext by random access.
type Asset struct {
	*cobblestone.ReaderAt
	// KeyURI and Mode say which key protects it.
	KeyURI string
	Mode   string
	// CiphertextSize is the stored object's size.
	CiphertextSize int64
}

// Open opens tenantID/assetID from the vault for random-access reads: it
// reads the ciphertext's prefix, gets the asset key from the broker, and
// returns a ReaderAt that fetches and decrypts only the chunks a read needs.
// ctx bounds every later read.
func (c *Client) Open(ctx context.Context, store *vault.Store, tenantID, assetID string, opts ...cobblestone.Option) (*Asset, error) {
	if err := events.ValidateTenantID(tenantID); err != nil {
		return nil, err
	}
	if err := events.ValidateAssetID(assetID); err != nil {
		return nil, err
	}
	obj, err := store.OpenReaderAt(ctx, events.VaultObjectName(tenantID, assetID))
	if err != nil {
		return nil, err
	}
	prefix, err := envelope.ReadPrefix(obj, obj.Size())
	if err != nil {
		return nil, fmt.Errorf("asset %s/%s: %w", tenantID, assetID, err)
	}
	key, resp, err := c.Key(ctx, tenantID, assetID, prefix)
	if err != nil {
		return nil, err
	}
	ra, err := envelope.NewRawReaderAt(obj, obj.Size(), prefix, key, opts...)
	key.Destroy()
	if err != nil {
		return nil, err
	}
	return &Asset{ReaderAt: ra, KeyURI: resp.KeyURI, Mode: resp.Mode, CiphertextSize: obj.Size()}, nil
}
