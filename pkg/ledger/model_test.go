package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestRandomOpsMatchModel drives Put, Apply, Update and Delete at random and
// compares every read path with an in-memory model after each step.
func TestRandomOpsMatchModel(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	s.scanChunk = 5
	rng := rand.New(rand.NewPCG(1, 2))
	tenants := []string{"a", "ab", "a-b"}
	keys := []string{"k", "k2", "k/x"}
	type id struct{ tenant, asset string }
	model := map[id]Record{}

	randRecord := func(tn, asset string) Record {
		if rng.IntN(5) == 0 {
			return rejected(tn, asset)
		}
		r := enc(tn, asset, Modes()[rng.IntN(3)], keys[rng.IntN(len(keys))])
		r.StreamSeq = rng.Uint64()
		return r
	}
	randID := func() id { return id{tenants[rng.IntN(len(tenants))], fmt.Sprintf("x%d", rng.IntN(25))} }

	for step := range 150 {
		switch rng.IntN(4) {
		case 0, 1: // batch
			var recs []Record
			for range 1 + rng.IntN(6) {
				k := randID()
				r := randRecord(k.tenant, k.asset)
				recs = append(recs, r)
			}
			if err := s.Put(ctx, recs...); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			for _, r := range recs {
				r.UpdatedAt = testClock
				r.EncryptedAt = r.EncryptedAt.UTC()
				model[id{r.TenantID, r.AssetID}] = r
			}
		case 2:
			k := randID()
			if err := s.Delete(ctx, k.tenant, k.asset); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
		case 3:
			k := randID()
			var next *Record
			if rng.IntN(3) > 0 {
				r := randRecord(k.tenant, k.asset)
				next = &r
			}
			if err := s.Update(ctx, k.tenant, k.asset, func(cur Record, found bool) (*Record, error) {
				if m, ok := model[k]; found != ok || (ok && !reflect.DeepEqual(cur, m)) {
					t.Errorf("step %d: Update fn got %v found=%v, model %v", step, cur, found, m)
				}
				return next, nil
			}); err != nil {
				t.Fatal(err)
			}
			if next == nil {
				delete(model, k)
			} else {
				r := *next
				r.UpdatedAt = testClock
				r.EncryptedAt = r.EncryptedAt.UTC()
				model[k] = r
			}
		}
		if step%10 != 9 {
			continue
		}
		checkIndexes(t, s)
		for _, tn := range tenants {
			counts := map[Mode]int{ModeCustomer: 0, ModeFallback: 0, ModePlatform: 0}
			wantMode := map[Mode][]string{}
			wantKey := map[string][]string{}
			for k, r := range model {
				if k.tenant != tn || r.State != StateEncrypted {
					continue
				}
				counts[r.Mode]++
				wantMode[r.Mode] = append(wantMode[r.Mode], k.asset)
				wantKey[r.KeyURI] = append(wantKey[r.KeyURI], k.asset)
			}
			got, err := s.CountByMode(ctx, tn)
			if err != nil || !reflect.DeepEqual(got, counts) {
				t.Fatalf("step %d: CountByMode(%q) = %v, %v; want %v", step, tn, got, err, counts)
			}
			for _, m := range Modes() {
				want := wantMode[m]
				slices.Sort(want)
				if got := byModeIDs(t, s, tn, m, ScanOptions{}); !slices.Equal(got, want) {
					t.Fatalf("step %d: ByMode(%q, %q) = %q, want %q", step, tn, m, got, want)
				}
			}
			for _, k := range keys {
				want := wantKey[k]
				slices.Sort(want)
				if got := byKeyIDs(t, s, tn, k, ScanOptions{Limit: 0}); !slices.Equal(got, want) {
					t.Fatalf("step %d: ByKey(%q, %q) = %q, want %q", step, tn, k, got, want)
				}
			}
		}
		for k, want := range model {
			got, err := s.Get(ctx, k.tenant, k.asset)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("step %d: Get(%v) = %v, %v; want %v", step, k, got, err, want)
			}
		}
		st, err := s.Stats(ctx)
		if err != nil || st.Records != len(model) {
			t.Fatalf("step %d: Stats = %+v, %v; want %d records", step, st, err, len(model))
		}
		if _, err := s.Get(ctx, "zz", "x0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(unknown tenant) err = %v", err)
		}
	}
}
