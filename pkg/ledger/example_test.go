package ledger_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/pkg/ledger"
)

func Example() {
	dir, err := os.MkdirTemp("", "ledger-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := ledger.Open(filepath.Join(dir, "encryptor", "ledger.db"), ledger.WithOpenTimeout(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// One fetched batch of messages → one transaction, one fsync.
	err = s.Apply(ctx, ledger.Batch{
		Records: []ledger.Record{
			{TenantID: "acme", AssetID: "rec-1", Service: "cloud_recording", State: ledger.StateEncrypted,
				Mode: ledger.ModeCustomer, KeyURI: "awskms://arn:aws:kms:eu-west-2:111122223333:key/k1",
				WrappedSeed: []byte("kms-ciphertext"), Size: 1024, StreamSeq: 41},
			{TenantID: "acme", AssetID: "rec-2", Service: "cloud_recording", State: ledger.StateEncrypted,
				Mode: ledger.ModeFallback, KeyURI: "localkms://platform-backup", Reencrypt: true, StreamSeq: 42},
			{TenantID: "acme", AssetID: "chat-9", Service: "team_chat", State: ledger.StateRejected,
				RejectReason: "customer_key_unavailable", StreamSeq: 43},
		},
		Cursors: map[string]uint64{"KW_ASSETS": 43},
	})
	if err != nil {
		log.Fatal(err)
	}

	// A re-encryption job: every fallback asset of the tenant, healed in place.
	err = s.ByMode(ctx, "acme", ledger.ModeFallback, ledger.ScanOptions{Limit: 100}, func(r ledger.Record) error {
		fmt.Println("heal", r.AssetID)
		return s.Update(ctx, r.TenantID, r.AssetID, func(cur ledger.Record, found bool) (*ledger.Record, error) {
			if !found || !cur.Reencrypt {
				return &cur, nil // already done: safe to run twice
			}
			cur.Mode, cur.KeyURI, cur.Reencrypt = ledger.ModeCustomer, "awskms://arn:aws:kms:eu-west-2:111122223333:key/k1", false
			return &cur, nil
		})
	})
	if err != nil {
		log.Fatal(err)
	}

	counts, _ := s.CountByMode(ctx, "acme")
	seq, _ := s.Cursor(ctx, "KW_ASSETS")
	st, _ := s.Stats(ctx)
	r, _ := s.Get(ctx, "acme", "rec-1")
	fmt.Println("customer", counts[ledger.ModeCustomer], "fallback", counts[ledger.ModeFallback])
	fmt.Println("cursor", seq, "records", st.Records, "rejected", st.ByState[ledger.StateRejected])
	fmt.Println(r)
	// Output:
	// heal rec-2
	// customer 2 fallback 0
	// cursor 43 records 3 rejected 1
	// ledger.Record{tenant_id="acme" asset_id="rec-1" state=encrypted mode=customer key_uri="awskms://arn:aws:kms:eu-west-2:111122223333:key/k1" wrapped_seed=[14 bytes] stream_seq=41}
}
