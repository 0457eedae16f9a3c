package notifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
)

// Store is the notifier's bbolt file: the sent ledger (one entry per
// message id, i.e. per event and recipient), the last immediate send per
// digest key, and the pending digests. It makes "exactly one email per
// event per recipient" hold across redeliveries, restarts and replays, and
// keeps a digest across a restart.
type Store struct{ db *bbolt.DB }

var (
	bucketSent    = []byte("sent")
	bucketLast    = []byte("last")
	bucketDigests = []byte("digests")
)

// SentRecord is what the ledger keeps of one message.
type SentRecord struct {
	At time.Time `json:"at"`
	// Outcome is "sent" or "rejected" (the server refused the recipient
	// for good).
	Outcome string `json:"outcome"`
	Where   string `json:"where,omitempty"`
	Error   string `json:"error,omitempty"`
}

// OpenStore opens (creating) the store at path.
func OpenStore(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("notifier store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketSent, bucketLast, bucketDigests} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Sent returns the ledger's record of messageID, if any.
func (s *Store) Sent(messageID string) (*SentRecord, bool, error) {
	var rec *SentRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketSent).Get([]byte(messageID))
		if v == nil {
			return nil
		}
		rec = &SentRecord{}
		return json.Unmarshal(v, rec)
	})
	return rec, rec != nil, err
}

// RecordSent writes messageID's outcome.
func (s *Store) RecordSent(messageID string, rec SentRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketSent).Put([]byte(messageID), data) })
}

// CountSent counts the ledger's records by outcome.
func (s *Store) CountSent() (map[string]int, error) {
	out := map[string]int{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSent).ForEach(func(_, v []byte) error {
			var r SentRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out[r.Outcome]++
			return nil
		})
	})
	return out, err
}

// lastSend is what was sent at once for a digest key in its current
// window.
type lastSend struct {
	// At starts the window: the first email sent at once in it.
	At time.Time `json:"at"`
	// EventIDs are the events sent at once in the window.
	EventIDs []string `json:"event_ids,omitempty"`
	// Digested: the window began with a digest, so the key is still
	// flapping and nothing more goes out at once until it ends.
	Digested bool `json:"digested,omitempty"`
}

// pendingDigest is a digest being collected, as stored.
type pendingDigest struct {
	TenantID string    `json:"tenant_id"`
	Kind     Kind      `json:"kind"`
	KeyURI   string    `json:"key_uri,omitempty"`
	From     time.Time `json:"from"` // the window's start: the last immediate send
	Items    []*Notice `json:"items"`
}

// digestOrSend decides, in one transaction, whether n goes out at once or
// joins its digest key's pending digest (stored). Within a window (from the
// first email sent at once) up to limit events go out at once; later ones,
// and any while a digest is pending, are digested. It reports true for
// "send now". A redelivered event gets the same answer as the first time.
func (s *Store) digestOrSend(n *Notice, window time.Duration, limit int, now time.Time) (bool, error) {
	key := []byte(n.TenantID + "|" + n.DigestKey)
	sendNow := false
	err := s.db.Update(func(tx *bbolt.Tx) error {
		last := tx.Bucket(bucketLast)
		digests := tx.Bucket(bucketDigests)
		var l lastSend
		if v := last.Get(key); v != nil {
			if err := json.Unmarshal(v, &l); err != nil {
				return err
			}
		}
		for _, id := range l.EventIDs {
			if id == n.EventID {
				sendNow = true // sent at once the first time: the ledger skips who got it
				return nil
			}
		}
		if v := digests.Get(key); v != nil {
			var d pendingDigest
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			for _, it := range d.Items {
				if it.EventID == n.EventID {
					return nil
				}
			}
			d.Items = append(d.Items, n)
			data, err := json.Marshal(&d)
			if err != nil {
				return err
			}
			return digests.Put(key, data)
		}
		if l.At.IsZero() || now.Sub(l.At) >= window {
			l = lastSend{At: now.UTC()}
		}
		if l.Digested || len(l.EventIDs) >= limit {
			d := pendingDigest{TenantID: n.TenantID, Kind: n.Kind, KeyURI: n.KeyURI, From: l.At, Items: []*Notice{n}}
			data, err := json.Marshal(&d)
			if err != nil {
				return err
			}
			return digests.Put(key, data)
		}
		sendNow = true
		l.EventIDs = append(l.EventIDs, n.EventID)
		data, err := json.Marshal(l)
		if err != nil {
			return err
		}
		return last.Put(key, data)
	})
	return sendNow, err
}

// dueDigests returns the pending digests whose window has passed.
func (s *Store) dueDigests(window time.Duration, now time.Time) (map[string]*pendingDigest, error) {
	out := map[string]*pendingDigest{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDigests).ForEach(func(k, v []byte) error {
			var d pendingDigest
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if now.Sub(d.From) >= window {
				out[string(k)] = &d
			}
			return nil
		})
	})
	return out, err
}

// finishDigest removes the digest under key and starts a new window: the
// digest counts as the key's last send.
func (s *Store) finishDigest(key string, now time.Time) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketDigests).Get([]byte(key)) == nil {
			return errors.New("digest already finished")
		}
		if err := tx.Bucket(bucketDigests).Delete([]byte(key)); err != nil {
			return err
		}
		// A new window starts with the digest: while the key keeps
		// flapping, one digest per window; once it is quiet for a window,
		// the next change goes out at once again.
		data, err := json.Marshal(lastSend{At: now.UTC(), Digested: true})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketLast).Put([]byte(key), data)
	})
}
