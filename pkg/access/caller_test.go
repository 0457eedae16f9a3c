package access

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestCallerFromHeader(t *testing.T) {
	h := nats.Header{}
	if _, err := CallerFrom(h); !errors.Is(err, ErrNoCaller) {
		t.Fatalf("no header: %v, want ErrNoCaller", err)
	}
	// name is the connection name the client chose: never read.
	h.Set(RequestInfoHeader, `{"acc":"AACC","user":"UUSER","name":"i-am-the-operator","name_tag":"viewer","tags":["keyward-role:reader","keyward-service:cloud_recording","keyward-service:phone_recording","keyward-purpose:playback","other:tag"]}`)
	c, err := CallerFrom(h)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "viewer" || c.User != "UUSER" || c.Account != "AACC" || c.Role != RoleReader {
		t.Fatalf("caller %+v", c)
	}
	if !c.MayService("phone_recording") || c.MayService("team_chat") || !c.MayPurpose("playback") || c.MayPurpose("support") {
		t.Fatalf("scope of %+v", c)
	}
	h.Set(RequestInfoHeader, `{"acc":"AACC"}`)
	if _, err := CallerFrom(h); !errors.Is(err, ErrNoCaller) {
		t.Fatalf("no user: %v, want ErrNoCaller", err)
	}
	h.Set(RequestInfoHeader, `{`)
	if _, err := CallerFrom(h); err == nil {
		t.Fatal("garbage parsed")
	}
}

// TestCallerOverTheImport: a request a reader sends through the shared
// service import reaches KEYWARD_SERVICES with the reader's identity and
// scope, whatever Nats-Request-Info the reader wrote itself.
func TestCallerOverTheImport(t *testing.T) {
	s := startTestServer(t)
	broker, _ := s.connect(t, Identity{Name: "key-broker", Role: RoleKeyBroker})
	reader, _ := s.connect(t, Identity{Name: "viewer", Role: RoleReader, Services: []string{"cloud_recording"}, Purposes: []string{"playback"}})
	got := make(chan Caller, 1)
	errs := make(chan error, 1)
	if _, err := broker.Subscribe("keyward.key.unwrap.*", func(m *nats.Msg) {
		c, err := CallerFrom(m.Header)
		if err != nil {
			errs <- err
			return
		}
		got <- c
		_ = m.Respond([]byte("ok"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := broker.Flush(); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("keyward.key.unwrap.acme")
	m.Header.Set(RequestInfoHeader, `{"user":"UFORGED","name_tag":"operator","tags":["keyward-role:operator"]}`)
	if _, err := reader.RequestMsg(m, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		if c.Name != "viewer" || c.Role != RoleReader || c.User == "UFORGED" || !c.MayService("cloud_recording") || !c.MayPurpose("playback") {
			t.Fatalf("the service saw %+v, want the reader viewer with its scope", c)
		}
		rec, _ := s.auth.Current("viewer")
		if c.User != rec.UserKey {
			t.Fatalf("caller user %s, want the credential's key %s", c.User, rec.UserKey)
		}
	case err := <-errs:
		t.Fatal(err)
	}
}
