package reencryptor_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// A job waits while the encryptor has a backlog of live assets, and goes on
// once the encryptor has caught up: live traffic goes first.
func TestYieldsToLiveTraffic(t *testing.T) {
	s := newStack(t, func(o *reencryptor.Options) { o.YieldBacklog = 5 })
	key := s.enroll("y")
	s.enroll("live")
	s.startReencryptor()
	s.setStatus("y", key, events.KeyStatusUnavailable)
	s.putMany("y", "a", 20, func(i int) []byte { return pattern(300, i) })

	// The encryptor stops; live assets queue up behind it.
	s.encStop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pending []*producer.Pending
	for i := range 10 {
		p, err := s.producer.Put(ctx, producer.Asset{TenantID: "live", AssetID: assetID("l", i), Service: "cloud_recording", OwnerUserID: "u"},
			bytes.NewReader(pattern(100, i)), 100)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pending = append(pending, p)
	}
	// The key comes back (as the monitor would write it).
	kv, err := s.env.JS.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		t.Fatal(err)
	}
	if err := keystatus.Put(ctx, kv, keystatus.Record{TenantID: "y", KeyURI: key.String(), Status: events.KeyStatusAvailable, Reason: "test", Since: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	job := s.waitJob("y", events.PurposeHeal, 20*time.Second, func(j *reencryptor.Job) bool { return j.State == events.JobRunning })
	time.Sleep(1500 * time.Millisecond)
	if j, _ := s.jobs.Get(ctx, "y", events.PurposeHeal); j.Done != 0 {
		t.Fatalf("the job moved %d assets while 10 live assets waited", j.Done)
	}
	// The encryptor is back: the live assets go first, then the job runs.
	s.startEncryptor()
	for _, p := range pending {
		if out, err := p.Wait(ctx); err != nil || out.Encrypted == nil {
			t.Fatalf("live asset: %+v, %v", out, err)
		}
	}
	done := s.waitJob("y", events.PurposeHeal, 30*time.Second, completedAndFinal)
	if done.ID != job.ID || done.Done != 20 {
		t.Fatalf("job after the backlog: %s done %d", done.ID, done.Done)
	}
}
