package keybroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
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
	reopens int
	purpose string
}

// ClientOption tunes a Client.
type ClientOption func(*Client)

// WithTimeout bounds one request (default 10s: a cold KMS call included).
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// WithRetries sets how often a retryable refusal is retried (default 5,
// with backoff from 100 ms): covers a broker whose ledger has not yet seen a
// just-encrypted asset.
func WithRetries(n int) ClientOption { return func(c *Client) { c.retries = n } }

// WithReopens sets how often Open and an Asset's reads re-open a vault
// object that was replaced while being read (default 4: five attempts in
// all, with backoff from 50 ms, within 3 s). 0 turns re-opening off.
func WithReopens(n int) ClientOption { return func(c *Client) { c.reopens = n } }

// WithPurpose states why the reader asks (events.Purposes): the broker
// releases a key only for a purpose the reader's credential and the tenant
// allow.
func WithPurpose(p string) ClientOption { return func(c *Client) { c.purpose = p } }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn, opts ...ClientOption) *Client {
	c := &Client{nc: nc, timeout: 10 * time.Second, retries: 5, reopens: 4}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Key asks for the key of tenantID/assetID whose ciphertext starts with
// prefix. Errors from the broker are *Error. Retryable refusals are asked
// again (WithRetries); a prefix_mismatch is not, since the same prefix gets
// the same answer: Open re-reads the prefix and calls Key again.
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
		resp, err := c.request(ctx, UnwrapRequest{TenantID: tenantID, AssetID: assetID, Prefix: raw, RecipientPublicKey: rcpt.PublicKey(), Purpose: c.purpose})
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
// It is safe for concurrent use.
//
// If the vault object is replaced while it is read (a re-encryption or a
// rewrap writes the same name: new chunks, new metadata, the old chunks
// purged), a read that fails because of it re-opens the object, asks the
// broker for the new prefix's key and reads again: re-encryption keeps the
// plaintext, so the caller sees one consistent asset. See the package doc.
type Asset struct {
	// KeyURI and Mode say which key protected it when it was opened.
	KeyURI string
	Mode   string
	// CiphertextSize is the stored object's size when it was opened.
	CiphertextSize int64

	c        *Client
	store    *vault.Store
	ctx      context.Context
	tenantID string
	assetID  string
	opts     []cobblestone.Option

	mu  sync.Mutex
	cur *openObject
}

// openObject is one version of the vault object with its key.
type openObject struct {
	obj       *vault.ReaderAt
	ra        *cobblestone.ReaderAt
	plainSize int64 // from the ciphertext size, not yet authenticated
	keyURI    string
	mode      string
}

// Re-open bounds: after a refusal or read failure caused by the object being
// replaced, the object is re-opened with backoff from reopenBackoff, at most
// Client.reopens times and within reopenBudget.
const (
	reopenBackoff = 50 * time.Millisecond
	reopenBudget  = 3 * time.Second
)

// Open opens tenantID/assetID from the vault for random-access reads: it
// reads the ciphertext's prefix, gets the asset key from the broker, and
// returns an Asset that fetches and decrypts only the chunks a read needs.
// ctx bounds every later read.
//
// When the broker answers prefix_mismatch (the object was replaced and the
// broker's ledger has not caught up yet, or the reverse), or the object
// changes (another NUID or digest) while its prefix is read, Open re-opens
// it and asks again, up to 5 attempts (WithReopens) with backoff from 50 ms
// and at most 3 s in all; then it fails with the last error, a *Error with
// CodePrefixMismatch for a prefix the broker keeps refusing (a tampered
// ciphertext). A missing object is vault.ErrNotFound at once.
func (c *Client) Open(ctx context.Context, store *vault.Store, tenantID, assetID string, opts ...cobblestone.Option) (*Asset, error) {
	if err := events.ValidateTenantID(tenantID); err != nil {
		return nil, err
	}
	if err := events.ValidateAssetID(assetID); err != nil {
		return nil, err
	}
	a := &Asset{c: c, store: store, ctx: ctx, tenantID: tenantID, assetID: assetID, opts: opts}
	cur, err := a.open()
	if err != nil {
		return nil, err
	}
	a.cur = cur
	a.KeyURI, a.Mode, a.CiphertextSize = cur.keyURI, cur.mode, cur.obj.Size()
	return a, nil
}

// ReadAt implements io.ReaderAt over the plaintext.
func (a *Asset) ReadAt(p []byte, off int64) (int, error) {
	var n int
	err := a.retry(func(ra *cobblestone.ReaderAt) error {
		var err error
		n, err = ra.ReadAt(p, off)
		return err
	})
	return n, err
}

// Size authenticates and returns the plaintext size.
func (a *Asset) Size() (int64, error) {
	var n int64
	err := a.retry(func(ra *cobblestone.ReaderAt) error {
		var err error
		n, err = ra.Size()
		return err
	})
	return n, err
}

// retry runs op on the current object and, when op fails because the
// object was replaced underneath, again on its replacement.
func (a *Asset) retry(op func(*cobblestone.ReaderAt) error) error {
	a.mu.Lock()
	cur := a.cur
	a.mu.Unlock()
	for attempt := 0; ; attempt++ {
		err := op(cur.ra)
		if err == nil || err == io.EOF || attempt >= a.c.reopens || a.ctx.Err() != nil {
			return err
		}
		next, rerr := a.replaced(cur)
		if rerr != nil {
			return fmt.Errorf("%w (asset %s/%s changed while reading and could not be re-opened: %w)", err, a.tenantID, a.assetID, rerr)
		}
		if next == nil {
			return err
		}
		cur = next
	}
}

// replaced returns the object that replaced cur, opening it if no other
// read did already, or nil if the object was not replaced (the read failed
// for another reason).
func (a *Asset) replaced(cur *openObject) (*openObject, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur != cur {
		return a.cur, nil
	}
	if !a.changed(cur.obj) {
		return nil, nil
	}
	next, err := a.open()
	if err != nil {
		return nil, err
	}
	if next.plainSize != cur.plainSize {
		return nil, fmt.Errorf("the object now holds %d bytes of plaintext, not %d: another asset, not a re-encryption", next.plainSize, cur.plainSize)
	}
	a.cur = next
	return next, nil
}

// changed reports whether the vault object is no longer the one obj reads
// (another NUID or digest). A deleted object has not changed: the read fails.
func (a *Asset) changed(obj *vault.ReaderAt) bool {
	info, err := a.store.Info(a.ctx, events.VaultObjectName(a.tenantID, a.assetID))
	if err != nil {
		return false
	}
	return info.NUID != obj.Info().NUID || info.Digest != obj.Info().Digest
}

// open opens the object and gets its key, re-opening it while it is being
// replaced (see Open).
func (a *Asset) open() (*openObject, error) {
	start := time.Now()
	delay := reopenBackoff
	for attempt := 0; ; attempt++ {
		cur, again, err := a.openOnce()
		if err == nil {
			return cur, nil
		}
		if !again || attempt >= a.c.reopens || time.Since(start)+delay > reopenBudget {
			return nil, err
		}
		select {
		case <-a.ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// openOnce makes one attempt; again reports whether the failure is one a
// replaced object explains, so re-opening may succeed.
func (a *Asset) openOnce() (cur *openObject, again bool, err error) {
	ctx := a.ctx
	obj, err := a.store.OpenReaderAt(ctx, events.VaultObjectName(a.tenantID, a.assetID))
	if err != nil {
		return nil, false, err
	}
	prefix, err := envelope.ReadPrefix(obj, obj.Size())
	if err != nil {
		return nil, a.changed(obj), fmt.Errorf("asset %s/%s: %w", a.tenantID, a.assetID, err)
	}
	plainSize, err := envelope.PlaintextSize(len(prefix.RawHeader), obj.Size())
	if err != nil {
		return nil, a.changed(obj), fmt.Errorf("asset %s/%s: %w", a.tenantID, a.assetID, err)
	}
	key, resp, err := a.c.Key(ctx, a.tenantID, a.assetID, prefix)
	if err != nil {
		var be *Error
		return nil, errors.As(err, &be) && be.RetryAfterReopen(), err
	}
	ra, err := envelope.NewRawReaderAt(obj, obj.Size(), prefix, key, a.opts...)
	key.Destroy()
	if err != nil {
		return nil, false, err
	}
	return &openObject{obj: obj, ra: ra, plainSize: plainSize, keyURI: resp.KeyURI, mode: resp.Mode}, false, nil
}
