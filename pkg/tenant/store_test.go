package tenant

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

func newTestStore(t *testing.T, opts ...Option) (*Store, jetstream.KeyValue) {
	t.Helper()
	js := startJetStream(t)
	kv := tenantsBucket(t, js)
	return NewStore(kv, opts...), kv
}

func TestOpenStore(t *testing.T) {
	js := startJetStream(t)
	ctx := testContext(t)
	_, err := OpenStore(ctx, js)
	if !errors.Is(err, jetstream.ErrBucketNotFound) || !strings.Contains(err.Error(), "keyward dev") {
		t.Fatalf("OpenStore without the bucket err = %v, want ErrBucketNotFound naming keyward dev", err)
	}
	tenantsBucket(t, js)
	s, err := OpenStore(ctx, js)
	if err != nil {
		t.Fatalf("OpenStore err = %v", err)
	}
	if _, err := s.Create(ctx, validConfig()); err != nil {
		t.Fatalf("Create through OpenStore err = %v", err)
	}

	// The bucket Keyward's provisioning creates is the one OpenStore binds.
	env := natstest.Start(t)
	ps, err := OpenStore(ctx, env.JS)
	if err != nil {
		t.Fatalf("OpenStore on a provisioned server err = %v", err)
	}
	if _, err := ps.Apply(ctx, validConfig()); err != nil {
		t.Fatalf("Apply on a provisioned server err = %v", err)
	}
}

func TestStoreCreateGet(t *testing.T) {
	now := time.Date(2026, 2, 1, 10, 0, 0, 123, time.FixedZone("CET", 3600))
	s, kv := newTestStore(t, WithClock(func() time.Time { return now }))
	ctx := testContext(t)

	in := validConfig()
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	if created.Revision == 0 || !created.UpdatedAt.Equal(now) || created.UpdatedAt.Location() != time.UTC {
		t.Errorf("Create() = rev %d, updated_at %v; want a revision and UpdatedAt = now in UTC", created.Revision, created.UpdatedAt)
	}
	if in.Revision != 0 || !in.UpdatedAt.IsZero() {
		t.Error("Create changed its argument")
	}

	got, err := s.Get(ctx, "acme")
	if err != nil {
		t.Fatalf("Get err = %v", err)
	}
	if got.Revision != created.Revision {
		t.Errorf("Get().Revision = %d, want %d", got.Revision, created.Revision)
	}
	if !configsEqual(got, created) {
		t.Errorf("Get() = %+v, want %+v", got, created)
	}

	// The stored value is the JSON document: snake_case, no revision.
	e, err := kv.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"tenant_id":"acme"`, `"fallback_enabled":true`, `"phone":{"drop_calls":true}`, `"enrolled_at":"2026-01-15T09:00:00Z"`, `"updated_at":"2026-02-01T09:00:00.000000123Z"`} {
		if !strings.Contains(string(e.Value()), want) {
			t.Errorf("stored value %s lacks %s", e.Value(), want)
		}
	}
	if strings.Contains(string(e.Value()), "evision") {
		t.Errorf("stored value %s carries the revision", e.Value())
	}

	if _, err := s.Create(ctx, validConfig()); !errors.Is(err, ErrExists) {
		t.Errorf("second Create err = %v, want ErrExists", err)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nobody) err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "bad.id"); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("Get(bad.id) err = %v, want events.ErrInvalid", err)
	}
}

func TestStoreValidatesWrites(t *testing.T) {
	s, kv := newTestStore(t, WithValidateOptions(WithServiceCatalog(DefaultServices)))
	ctx := testContext(t)

	bad := validConfig()
	bad.Services = []string{"fax"}
	if _, err := s.Create(ctx, bad); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Create(invalid) err = %v, want events.ErrInvalid", err)
	}
	if _, err := s.Apply(ctx, bad); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Apply(invalid) err = %v, want events.ErrInvalid", err)
	}
	if _, err := s.Create(ctx, nil); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Create(nil) err = %v, want events.ErrInvalid", err)
	}
	if _, err := kv.Get(ctx, "acme"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("an invalid document was written: %v", err)
	}

	c, err := s.Create(ctx, validConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.Keys[0].Role = RoleReplica // no primary
	if _, err := s.Update(ctx, c); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Update(invalid) err = %v, want events.ErrInvalid", err)
	}
	if _, err := s.Modify(ctx, "acme", func(c *Config) error { c.Recipients = []string{"nope"}; return nil }); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Modify(invalid) err = %v, want events.ErrInvalid", err)
	}
	// localkms keys need AllowLocalKeys.
	local := validConfig()
	local.TenantID = "dev"
	local.Keys = []Key{{URI: localKey, Role: RolePrimary, EnrolledAt: enrolled}}
	if _, err := s.Create(ctx, local); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Create(localkms) err = %v, want events.ErrInvalid", err)
	}
	dev := NewStore(kv, WithValidateOptions(AllowLocalKeys(true)))
	if _, err := dev.Create(ctx, local); err != nil {
		t.Fatalf("Create(localkms) with AllowLocalKeys err = %v", err)
	}
}

func TestStoreUpdateConflict(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testContext(t)
	created, err := s.Create(ctx, validConfig())
	if err != nil {
		t.Fatal(err)
	}

	// Two writers read the same revision and update concurrently: exactly
	// one wins, the other gets ErrConflict.
	a, _ := s.Get(ctx, "acme")
	b, _ := s.Get(ctx, "acme")
	a.DisplayName, b.DisplayName = "by a", "by b"
	var wg sync.WaitGroup
	results := make([]error, 2)
	winners := make([]*Config, 2)
	for i, c := range []*Config{a, b} {
		wg.Go(func() { winners[i], results[i] = s.Update(ctx, c) })
	}
	wg.Wait()
	var ok, conflicts int
	var winner *Config
	for i, err := range results {
		switch {
		case err == nil:
			ok++
			winner = winners[i]
		case errors.Is(err, ErrConflict):
			conflicts++
		default:
			t.Fatalf("Update err = %v", err)
		}
	}
	if ok != 1 || conflicts != 1 {
		t.Fatalf("Updates: %d succeeded, %d conflicted; want 1 and 1 (%v)", ok, conflicts, results)
	}
	if winner.Revision <= created.Revision {
		t.Errorf("winner revision %d not after %d", winner.Revision, created.Revision)
	}
	got, _ := s.Get(ctx, "acme")
	if got.DisplayName != winner.DisplayName {
		t.Errorf("stored display name %q, want the winner's %q", got.DisplayName, winner.DisplayName)
	}

	// A stale revision keeps failing; an update without one is refused.
	if _, err := s.Update(ctx, created); !errors.Is(err, ErrConflict) {
		t.Errorf("Update(stale) err = %v, want ErrConflict", err)
	}
	if _, err := s.Update(ctx, validConfig()); err == nil || errors.Is(err, ErrConflict) {
		t.Errorf("Update(revision 0) err = %v, want a usage error", err)
	}
	// Updating a deleted tenant conflicts.
	if err := s.Delete(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, got); !errors.Is(err, ErrConflict) {
		t.Errorf("Update(deleted) err = %v, want ErrConflict", err)
	}
}

func TestStoreApply(t *testing.T) {
	s, kv := newTestStore(t)
	ctx := testContext(t)

	first, err := s.Apply(ctx, validConfig())
	if err != nil {
		t.Fatalf("Apply(new) err = %v", err)
	}
	c := validConfig()
	c.Fallback = false
	c.Revision = 999 // ignored: Apply checks against the revision it reads
	second, err := s.Apply(ctx, c)
	if err != nil {
		t.Fatalf("Apply(existing) err = %v", err)
	}
	if second.Revision <= first.Revision || second.Fallback {
		t.Errorf("Apply(existing) = rev %d fallback %v, want rev > %d and fallback off", second.Revision, second.Fallback, first.Revision)
	}
	if !second.UpdatedAt.After(first.UpdatedAt) && !second.UpdatedAt.Equal(first.UpdatedAt) {
		t.Errorf("UpdatedAt went back: %v then %v", first.UpdatedAt, second.UpdatedAt)
	}

	// Apply repairs an invalid stored document (Get reports it).
	if _, err := kv.Put(ctx, "acme", []byte(`{"tenant_id":"acme","keys":[{"uri":"nope","role":"primary"}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "acme"); !errors.Is(err, ErrInvalidStored) || !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Get(invalid stored) err = %v, want ErrInvalidStored and events.ErrInvalid", err)
	}
	if _, err := s.Apply(ctx, validConfig()); err != nil {
		t.Fatalf("Apply over an invalid document err = %v", err)
	}
	if _, err := s.Get(ctx, "acme"); err != nil {
		t.Fatalf("Get after repair err = %v", err)
	}

	// Apply after Delete creates again.
	if err := s.Delete(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, validConfig()); err != nil {
		t.Fatalf("Apply after Delete err = %v", err)
	}
}

func TestStoreModify(t *testing.T) {
	s, _ := newTestStore(t, WithModifyAttempts(100))
	ctx := testContext(t)
	if _, err := s.Create(ctx, validConfig()); err != nil {
		t.Fatal(err)
	}

	// Concurrent read-modify-writes lose no update: each adds a recipient.
	const writers = 8
	var calls atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = s.Modify(ctx, "acme", func(c *Config) error {
				calls.Add(1)
				c.Recipients = append(c.Recipients, fmt.Sprintf("w%d@acme.example", i))
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Modify %d err = %v", i, err)
		}
	}
	got, err := s.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Recipients) != 1+writers {
		t.Fatalf("recipients = %q, want the original and %d added", got.Recipients, writers)
	}
	for i := range writers {
		if !slices.Contains(got.Recipients, fmt.Sprintf("w%d@acme.example", i)) {
			t.Errorf("update of writer %d lost: %q", i, got.Recipients)
		}
	}
	t.Logf("%d writers needed %d calls of fn", writers, calls.Load())
}

func TestStoreModifyRetries(t *testing.T) {
	s, kv := newTestStore(t, WithModifyAttempts(3))
	other := NewStore(kv)
	ctx := testContext(t)
	if _, err := s.Create(ctx, validConfig()); err != nil {
		t.Fatal(err)
	}

	// Another writer comes first once: Modify reads again, calls fn again
	// and keeps both changes.
	calls := 0
	c, err := s.Modify(ctx, "acme", func(c *Config) error {
		calls++
		if calls == 1 {
			if _, err := other.Modify(ctx, "acme", func(c *Config) error { c.DisplayName = "renamed"; return nil }); err != nil {
				t.Errorf("interfering Modify err = %v", err)
			}
		}
		c.Fallback = false
		return nil
	})
	if err != nil {
		t.Fatalf("Modify err = %v", err)
	}
	if calls != 2 || c.DisplayName != "renamed" || c.Fallback {
		t.Fatalf("Modify: %d calls, result %+v; want 2 calls keeping both changes", calls, c)
	}

	// Another writer comes first every time: ErrConflict after the limit.
	calls = 0
	_, err = s.Modify(ctx, "acme", func(c *Config) error {
		calls++
		if _, err := other.Modify(ctx, "acme", func(c *Config) error { c.DisplayName = fmt.Sprint("x", calls); return nil }); err != nil {
			t.Errorf("interfering Modify err = %v", err)
		}
		return nil
	})
	if !errors.Is(err, ErrConflict) || calls != 3 {
		t.Fatalf("Modify under constant interference: err = %v after %d calls, want ErrConflict after 3", err, calls)
	}

	// fn's error stops it without a write; fn cannot rename the tenant.
	before, _ := s.Get(ctx, "acme")
	errStop := errors.New("stop")
	if _, err := s.Modify(ctx, "acme", func(c *Config) error { c.Fallback = true; return errStop }); !errors.Is(err, errStop) {
		t.Errorf("Modify(fn error) err = %v, want errStop", err)
	}
	if _, err := s.Modify(ctx, "acme", func(c *Config) error { c.TenantID = "other"; return nil }); err == nil {
		t.Error("Modify renamed the tenant")
	}
	after, _ := s.Get(ctx, "acme")
	if after.Revision != before.Revision {
		t.Errorf("failed Modify wrote: revision %d → %d", before.Revision, after.Revision)
	}
	if _, err := s.Modify(ctx, "nobody", func(*Config) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Modify(nobody) err = %v, want ErrNotFound", err)
	}
}

func TestStoreDeleteList(t *testing.T) {
	s, kv := newTestStore(t)
	ctx := testContext(t)

	list, err := s.List(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("List(empty) = %v, %v", list, err)
	}
	for _, id := range []string{"zeta", "acme", "mid"} {
		c := validConfig()
		c.TenantID = id
		if _, err := s.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Modify(ctx, "mid", func(c *Config) error { c.DisplayName = "Mid"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "zeta"); err != nil {
		t.Fatalf("Delete err = %v", err)
	}
	if _, err := s.Get(ctx, "zeta"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "zeta"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete err = %v, want ErrNotFound", err)
	}

	list, err = s.List(ctx)
	if err != nil {
		t.Fatalf("List err = %v", err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.TenantID)
		if c.Revision == 0 {
			t.Errorf("List: %s without revision", c.TenantID)
		}
	}
	if !slices.Equal(ids, []string{"acme", "mid"}) {
		t.Fatalf("List ids = %q, want [acme mid]", ids)
	}
	if list[1].DisplayName != "Mid" {
		t.Errorf("List shows an old revision of mid: %+v", list[1])
	}

	// Invalid stored documents are reported with the valid ones.
	if _, err := kv.Put(ctx, "broken", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "impostor", []byte(`{"tenant_id":"acme"}`)); err != nil {
		t.Fatal(err)
	}
	list, err = s.List(ctx)
	if !errors.Is(err, ErrInvalidStored) || !strings.Contains(err.Error(), `"broken"`) || !strings.Contains(err.Error(), `"impostor"`) {
		t.Errorf("List with invalid documents err = %v, want ErrInvalidStored naming both", err)
	}
	if len(list) != 2 {
		t.Errorf("List with invalid documents returned %d configs, want the 2 valid ones", len(list))
	}
}

// configsEqual compares two configurations field by field (times with
// Equal).
func configsEqual(a, b *Config) bool {
	if a.TenantID != b.TenantID || a.DisplayName != b.DisplayName || a.Fallback != b.Fallback || a.Phone != b.Phone ||
		!a.UpdatedAt.Equal(b.UpdatedAt) || a.Revision != b.Revision ||
		!slices.Equal(a.Services, b.Services) || !slices.Equal(a.LicensedUsers, b.LicensedUsers) ||
		!slices.Equal(a.Recipients, b.Recipients) || len(a.Keys) != len(b.Keys) {
		return false
	}
	for i := range a.Keys {
		if a.Keys[i].URI != b.Keys[i].URI || a.Keys[i].Role != b.Keys[i].Role || !a.Keys[i].EnrolledAt.Equal(b.Keys[i].EnrolledAt) {
			return false
		}
	}
	return true
}
