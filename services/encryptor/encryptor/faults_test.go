package encryptor_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/producer"
)

// TestNATSRestart: the server restarts (same data, same port) under a
// running worker; assets published before, during and after come out
// encrypted, each exactly once.
func TestNATSRestart(t *testing.T) {
	s := newStack(t)
	s.enroll("acme")
	data := pattern(2000, 1)
	s.mustEncrypt("acme", "before", data)

	// Publish a few, restart while they may be in flight, publish more.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var pending []*producer.Pending
	for i := range 20 {
		p, err := s.producer.Put(ctx, producer.Asset{TenantID: "acme", AssetID: fmt.Sprintf("during-%d", i), Service: "team_chat", OwnerUserID: "u"}, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	if err := s.env.Server.Restart(); err != nil {
		t.Fatal(err)
	}
	s.eventually("the connections to come back", func() bool { return s.env.NC.IsConnected() })
	s.mustEncrypt("acme", "after", data)

	// Outcome notifications of assets settled around the restart may be
	// lost with the connection; the log of record is what counts.
	s.eventually("every asset to be encrypted exactly once", func() bool {
		seen := map[string]int{}
		for _, m := range s.streamMsgs(events.StreamAssets, events.SubjectAssetEncrypted("acme")) {
			seen[m.Header.Get(events.HeaderAssetID)]++
		}
		for i := range 20 {
			if seen[fmt.Sprintf("during-%d", i)] != 1 {
				return false
			}
		}
		return seen["before"] == 1 && seen["after"] == 1
	})
	for _, p := range pending {
		p.Close()
	}
	for i := range 20 {
		got, err := s.get("acme", fmt.Sprintf("during-%d", i))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("during-%d after the restart: %v", i, err)
		}
	}
}

// TestConsumerDeletedUnderTheWorker: an operator deletes the durable
// consumer; the worker declares it again and keeps going.
func TestConsumerDeletedUnderTheWorker(t *testing.T) {
	s := newStack(t)
	s.enroll("acme")
	s.mustEncrypt("acme", "first", []byte("one"))
	if err := s.env.JS.DeleteConsumer(context.Background(), events.StreamIngest, events.ConsumerEncryptor); err != nil {
		t.Fatal(err)
	}
	if e := s.mustEncrypt("acme", "second", []byte("two")); e.Mode != events.ModeCustomer {
		t.Fatalf("after the consumer was deleted: %+v", e)
	}
}
