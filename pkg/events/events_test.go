package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

func TestValidateTenantID(t *testing.T) {
	valid := []string{"a", "acme", "acme-eu-1", "0tenant", strings.Repeat("a", 63)}
	invalid := []string{"", "-acme", "Acme", "ac.me", "ac*me", "ac>me", "ac me", "ac_me", "ac\x00me", strings.Repeat("a", 64)}
	for _, id := range valid {
		if err := events.ValidateTenantID(id); err != nil {
			t.Errorf("ValidateTenantID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range invalid {
		err := events.ValidateTenantID(id)
		if !errors.Is(err, events.ErrInvalid) {
			t.Errorf("ValidateTenantID(%q) = %v, want ErrInvalid", id, err)
			continue
		}
		var fe *events.FieldError
		if !errors.As(err, &fe) || fe.Field != "tenant_id" || fe.Fix == "" {
			t.Errorf("ValidateTenantID(%q) = %#v, want a FieldError on tenant_id with a fix", id, err)
		}
	}
}

func TestValidateAssetID(t *testing.T) {
	valid := []string{"a", "rec-2026.11_28", "A", strings.Repeat("a", 128)}
	invalid := []string{"", ".a", "-a", "a/b", "a b", "a*", strings.Repeat("a", 129)}
	for _, id := range valid {
		if err := events.ValidateAssetID(id); err != nil {
			t.Errorf("ValidateAssetID(%q) = %v", id, err)
		}
	}
	for _, id := range invalid {
		if err := events.ValidateAssetID(id); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("ValidateAssetID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

func TestSubjects(t *testing.T) {
	if got := events.SubjectAssetCreated("acme"); got != "keyward.asset.created.acme" {
		t.Errorf("SubjectAssetCreated = %q", got)
	}
	tenant, err := events.TenantFromSubject("keyward.asset.created.acme")
	if err != nil || tenant != "acme" {
		t.Errorf("TenantFromSubject = %q, %v", tenant, err)
	}
	for _, s := range []string{"keyward.asset.created.Ac", "other.asset.created.acme", "keyward", "keyward.asset.created."} {
		if _, err := events.TenantFromSubject(s); err == nil {
			t.Errorf("TenantFromSubject(%q) succeeded", s)
		}
	}
	if got := events.SubjectDLQ("bad.reason>"); got != "keyward.dlq.other" {
		t.Errorf("SubjectDLQ with an unsafe reason = %q, want keyward.dlq.other", got)
	}
	if got := events.SubjectDLQ(events.ReasonTenantMismatch); got != "keyward.dlq.tenant_mismatch" {
		t.Errorf("SubjectDLQ = %q", got)
	}
}

func TestDecodeAssetCreatedErrorsNameTheField(t *testing.T) {
	tests := []struct {
		in          string
		undecodable bool
		want        string
	}{
		{in: ``, undecodable: true, want: "empty message"},
		{in: `{"tenant_id":`, undecodable: true, want: "truncated"},
		{in: `not json`, undecodable: true, want: "not valid JSON"},
		{in: `{"tenant":"acme"}`, undecodable: true, want: `unknown field "tenant"`},
		{in: `{"size":"12"}`, undecodable: true, want: "field size"},
		{in: `{} {}`, undecodable: true, want: "trailing data"},
		{in: `{"tenant_id":"acme"}`, want: "asset_id is required"},
		{in: `{"tenant_id":"Acme","asset_id":"a","service":"s","owner_user_id":"u","origin":"cloud","created_at":"2026-01-01T00:00:00Z","content":{"inline":""}}`, want: "tenant_id has 'A' at position 0"},
		{in: `{"tenant_id":"acme","asset_id":"a","service":"s","owner_user_id":"u","origin":"cloud","created_at":"2026-01-01T00:00:00Z","content":{"inline":"aGk="},"size":3}`, want: "size is 3 but the inline content has 2 bytes"},
	}
	for _, tt := range tests {
		_, err := events.DecodeAssetCreated([]byte(tt.in))
		if err == nil {
			t.Errorf("DecodeAssetCreated(%q) succeeded", tt.in)
			continue
		}
		if got := errors.Is(err, events.ErrUndecodable); got != tt.undecodable {
			t.Errorf("DecodeAssetCreated(%q): errors.Is(ErrUndecodable) = %v, want %v (%v)", tt.in, got, tt.undecodable, err)
		}
		if !tt.undecodable && !errors.Is(err, events.ErrInvalid) {
			t.Errorf("DecodeAssetCreated(%q): want ErrInvalid, got %v", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeAssetCreated(%q) = %q, want it to mention %q", tt.in, err, tt.want)
		}
	}
}

func TestContentZeroByteInline(t *testing.T) {
	in := `{"tenant_id":"acme","asset_id":"a","service":"team_chat","owner_user_id":"u","origin":"cloud","created_at":"2026-01-01T00:00:00Z","content":{"inline":""}}`
	e, err := events.DecodeAssetCreated([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Content.IsInline() || len(e.Content.Inline) != 0 {
		t.Fatalf("zero-byte inline content decoded as %#v", e.Content)
	}
	out, _ := json.Marshal(e)
	if !strings.Contains(string(out), `"content":{"inline":""}`) {
		t.Errorf("zero-byte inline content lost in %s", out)
	}
}

func FuzzDecodeAssetCreated(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","service":"team_chat","owner_user_id":"u","origin":"cloud","created_at":"2026-01-01T00:00:00Z","content":{"inline":"aGk="}}`))
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","service":"team_chat","owner_user_id":"u","origin":"local_upload","created_at":"2026-01-01T00:00:00Z","content":{"bucket":"KW_STAGING","object":"acme/a"},"size":5,"sha256":"` + strings.Repeat("a", 64) + `","metadata":{"k":"v"}}`))
	f.Add([]byte(`{"content":{"inline":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := events.DecodeAssetCreated(data)
		if err != nil {
			if !errors.Is(err, events.ErrUndecodable) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("error %v is neither undecodable nor invalid", err)
			}
			return
		}
		// A valid event is safe to put in subjects and object names.
		if strings.ContainsAny(e.TenantID, ".*> \t") || events.ValidateAssetID(e.AssetID) != nil {
			t.Fatalf("accepted unsafe ids %q %q", e.TenantID, e.AssetID)
		}
		// And it survives a round trip unchanged.
		stableRoundTrip(t, e, events.DecodeAssetCreated)
	})
}

func FuzzDecodeAssetReencrypted(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","service":"team_chat","from_mode":"fallback","to_mode":"customer","from_key_uri":"localkms:///f","key_uri":"localkms:///c","key_version":"1","wrapped_seed":"d3JhcA==","location":{"bucket":"KW_VAULT","object":"acme/a"},"size":1,"ciphertext_size":200,"ciphertext_sha256":"` + strings.Repeat("a", 64) + `","header_sha256":"` + strings.Repeat("b", 64) + `","purpose":"heal","job_id":"j1","reencrypted_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","purpose":"deprovision","from_mode":"platform","to_mode":"platform","wrapped_seed":null}`))
	f.Add([]byte(`{"purpose":"rotation","key_uri":"k","from_key_uri":"k"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := events.DecodeAssetReencrypted(data)
		if err != nil {
			if !errors.Is(err, events.ErrUndecodable) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("error %v is neither undecodable nor invalid", err)
			}
			return
		}
		// A valid event is safe to put in subjects and object names, and
		// its modes fit its purpose.
		if strings.ContainsAny(e.TenantID, ".*> \t") || events.ValidateAssetID(e.AssetID) != nil {
			t.Fatalf("accepted unsafe ids %q %q", e.TenantID, e.AssetID)
		}
		if e.ToMode == events.ModeFallback || e.FromMode == events.ModePlatform || e.KeyURI == e.FromKeyURI {
			t.Fatalf("accepted %s from %s (%s) to %s (%s)", e.Purpose, e.FromMode, e.FromKeyURI, e.ToMode, e.KeyURI)
		}
		stableRoundTrip(t, e, events.DecodeAssetReencrypted)
	})
}

// stableRoundTrip: a decoded event marshals, decodes again and marshals to
// the same bytes.
func stableRoundTrip[T any](t *testing.T, e *T, decode func([]byte) (*T, error)) {
	t.Helper()
	out, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := decode(out)
	if err != nil {
		t.Fatalf("re-decoding %s: %v", out, err)
	}
	out2, _ := json.Marshal(e2)
	if string(out) != string(out2) {
		t.Fatalf("round trip not stable:\n%s\n%s", out, out2)
	}
}

func TestAssetReencryptedErrorsNameTheField(t *testing.T) {
	valid := func() events.AssetReencrypted {
		return events.AssetReencrypted{
			TenantID: "acme", AssetID: "a", Service: "team_chat", FromMode: events.ModeFallback, ToMode: events.ModeCustomer,
			FromKeyURI: "localkms:///f", KeyURI: "localkms:///c", KeyVersion: "1", WrappedSeed: []byte("w"),
			Location: events.Location{Bucket: events.BucketVault, Object: "acme/a"}, Size: 1, CiphertextSize: 200,
			CiphertextSHA256: strings.Repeat("a", 64), HeaderSHA256: strings.Repeat("b", 64),
			Purpose: events.PurposeHeal, JobID: "j", ReencryptedAt: time.Now(),
		}
	}
	if e := valid(); e.Validate() != nil {
		t.Fatalf("valid event: %v", e.Validate())
	}
	cases := []struct {
		field  string
		mutate func(e *events.AssetReencrypted)
	}{
		{"tenant_id", func(e *events.AssetReencrypted) { e.TenantID = "Acme" }},
		{"asset_id", func(e *events.AssetReencrypted) { e.AssetID = "" }},
		{"from_mode", func(e *events.AssetReencrypted) { e.FromMode = events.ModeCustomer }},
		{"to_mode", func(e *events.AssetReencrypted) { e.ToMode = events.ModePlatform }},
		{"to_mode", func(e *events.AssetReencrypted) {
			e.Purpose, e.FromMode = events.PurposeDeprovision, events.ModeCustomer
		}},
		{"from_mode", func(e *events.AssetReencrypted) { e.Purpose = events.PurposeRotation }},
		{"purpose", func(e *events.AssetReencrypted) { e.Purpose = "" }},
		{"key_uri", func(e *events.AssetReencrypted) { e.KeyURI = e.FromKeyURI }},
		{"wrapped_seed", func(e *events.AssetReencrypted) { e.WrappedSeed = nil }},
		{"location", func(e *events.AssetReencrypted) { e.Location.Bucket = events.BucketStaging }},
		{"job_id", func(e *events.AssetReencrypted) { e.JobID = "" }},
		{"reencrypted_at", func(e *events.AssetReencrypted) { e.ReencryptedAt = time.Time{} }},
	}
	for _, c := range cases {
		e := valid()
		c.mutate(&e)
		err := e.Validate()
		var fe *events.FieldError
		if !errors.Is(err, events.ErrInvalid) || !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("Validate() = %v, want a FieldError on %s", err, c.field)
		}
	}
}

func TestProvisionIsIdempotent(t *testing.T) {
	env := natstest.Start(t, natstest.WithoutProvisioning())
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := events.Provision(ctx, env.JS, events.ProvisionOptions{}); err != nil {
			t.Fatalf("Provision #%d: %v", i+1, err)
		}
	}
	for _, cfg := range events.StreamConfigs(events.ProvisionOptions{}) {
		s, err := env.JS.Stream(ctx, cfg.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", cfg.Name, err)
		}
		got := s.CachedInfo().Config
		if got.Duplicates != cfg.Duplicates || got.MaxAge != cfg.MaxAge || len(got.Subjects) != len(cfg.Subjects) {
			t.Errorf("stream %s config = %+v, want %+v", cfg.Name, got, cfg)
		}
	}
	if _, err := env.JS.ObjectStore(ctx, events.BucketVault); err != nil {
		t.Errorf("vault bucket: %v", err)
	}
	if _, err := env.JS.KeyValue(ctx, events.BucketTenants); err != nil {
		t.Errorf("tenants bucket: %v", err)
	}
}

func TestPublishDeduplicates(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	p := events.NewPublisher(env.JS, "test")
	out := events.Outgoing{
		Subject: events.SubjectAssetRejected("acme"),
		MsgID:   events.MsgID("rejected", "acme", "a1"),
		Type:    events.TypeAssetRejected,
		Event:   &events.AssetRejected{TenantID: "acme", AssetID: "a1", Reason: events.ReasonInvalidEvent, RejectedAt: time.Now()},
	}
	a1, err := p.Publish(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := p.Publish(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate || a1.Sequence != a2.Sequence {
		t.Errorf("acks %+v then %+v, want the second to be a duplicate of the first", a1, a2)
	}
	acks, err := p.PublishAll(ctx, []events.Outgoing{out, {Subject: out.Subject, MsgID: "other", Type: out.Type, Event: out.Event}})
	if err != nil {
		t.Fatal(err)
	}
	if !acks[0].Duplicate || acks[1].Duplicate {
		t.Errorf("PublishAll acks %+v %+v", acks[0], acks[1])
	}
	raw, err := mustStream(t, env.JS, events.StreamAssets).GetMsg(ctx, a1.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{events.HeaderCEType, events.HeaderCEID, events.HeaderCESource, events.HeaderCETime, events.HeaderMsgID} {
		if raw.Header.Get(h) == "" {
			t.Errorf("published message lacks header %s: %v", h, raw.Header)
		}
	}
}

func mustStream(t *testing.T, js jetstream.JetStream, name string) jetstream.Stream {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// settleOne publishes data to subject, fetches it through a consumer with
// maxDeliver, and settles it with err, returning the settlement.
func consumer(t *testing.T, js jetstream.JetStream) jetstream.Consumer {
	t.Helper()
	c, err := js.CreateOrUpdateConsumer(context.Background(), events.StreamIngest, jetstream.ConsumerConfig{
		Durable:       "test",
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: events.SubjectAssetCreatedAll,
		AckWait:       30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fetchOne(t *testing.T, c jetstream.Consumer, wait time.Duration) jetstream.Msg {
	t.Helper()
	b, err := c.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		return m
	}
	return nil
}

func dlqMessages(t *testing.T, js jetstream.JetStream) []*events.DeadLetter {
	t.Helper()
	ctx := context.Background()
	s := mustStream(t, js, events.StreamDLQ)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.DeadLetter
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		d, err := events.ParseDeadLetter(m.Subject, m.Header, m.Data, m.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func TestSettlePermanentDeadLettersWithRedaction(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	c := consumer(t, env.JS)
	body := `{"tenant_id":"globex","asset_id":"a1","content":{"inline":"U0VDUkVUIFBMQUlOVEVYVA=="}}`
	hdr := nats.Header{}
	hdr.Set("Nats-Msg-Id", "created.acme.a1")
	hdr.Set("X-Producer", "media-7")
	if _, err := env.JS.PublishMsg(ctx, &nats.Msg{Subject: events.SubjectAssetCreated("acme"), Data: []byte(body), Header: hdr}); err != nil {
		t.Fatal(err)
	}
	s := &events.Settler{DLQ: events.NewDeadLetterer(env.JS, "encryptor"), MaxDeliver: 5}
	m := fetchOne(t, c, time.Second)
	if got := s.Settle(ctx, m, events.Permanent(events.ReasonTenantMismatch, errors.New(`subject tenant "acme" differs from payload tenant "globex"`))); got != events.SettledDeadLettered {
		t.Fatalf("Settle = %s, want dead_lettered", got)
	}
	dl := dlqMessages(t, env.JS)
	if len(dl) != 1 {
		t.Fatalf("DLQ holds %d letters, want 1", len(dl))
	}
	d := dl[0]
	if d.Reason != events.ReasonTenantMismatch || d.Subject != "keyward.asset.created.acme" || d.TenantID != "acme" || d.Worker != "encryptor" || d.Deliveries != 1 || d.Stream != events.StreamIngest {
		t.Errorf("dead letter = %+v", d)
	}
	if strings.Contains(string(d.Data), "U0VDUkVU") || len(d.Redacted) != 1 {
		t.Errorf("inline plaintext not redacted: data %s, redacted %v", d.Data, d.Redacted)
	}
	if !strings.Contains(string(d.Data), `"tenant_id":"globex"`) {
		t.Errorf("dead letter lost the rest of the document: %s", d.Data)
	}
	if d.Headers["X-Producer"][0] != "media-7" || d.Headers["Nats-Msg-Id"][0] != "created.acme.a1" {
		t.Errorf("original headers not kept: %v", d.Headers)
	}
	// The original is terminated: nothing is redelivered.
	if b, _ := c.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond)); b != nil {
		for m := range b.Messages() {
			t.Fatalf("terminated message redelivered: %s", m.Data())
		}
	}
	// Redrive puts it back on the original subject with its headers.
	r := d.RedriveMsg()
	if r.Subject != "keyward.asset.created.acme" || r.Header.Get("X-Producer") != "media-7" || r.Header.Get("Nats-Msg-Id") == "created.acme.a1" {
		t.Errorf("redrive message = %s %v", r.Subject, r.Header)
	}
}

func TestSettleRetriesThenGivesUp(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	c := consumer(t, env.JS)
	if _, err := env.JS.Publish(ctx, events.SubjectAssetCreated("acme"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	s := &events.Settler{
		DLQ:        events.NewDeadLetterer(env.JS, "encryptor"),
		MaxDeliver: 3,
		Backoff:    func(uint64) time.Duration { return 10 * time.Millisecond },
	}
	transient := errors.New("kms: endpoint unreachable")
	var got []events.Settlement
	for i := 0; i < 3; i++ {
		m := fetchOne(t, c, 2*time.Second)
		if m == nil {
			t.Fatalf("delivery %d did not come", i+1)
		}
		got = append(got, s.Settle(ctx, m, transient))
	}
	want := []events.Settlement{events.SettledRetry, events.SettledRetry, events.SettledDeadLettered}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("settlements = %v, want %v", got, want)
		}
	}
	dl := dlqMessages(t, env.JS)
	if len(dl) != 1 || dl[0].Reason != events.ReasonMaxDeliveries || dl[0].Deliveries != 3 || !strings.Contains(dl[0].Detail, "endpoint unreachable") {
		t.Fatalf("DLQ = %+v", dl)
	}
}

func TestSettleAckAndShutdown(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	c := consumer(t, env.JS)
	for i := 0; i < 2; i++ {
		if _, err := env.JS.Publish(ctx, events.SubjectAssetCreated("acme"), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	s := &events.Settler{DLQ: events.NewDeadLetterer(env.JS, "w"), MaxDeliver: 3}
	if got := s.Settle(ctx, fetchOne(t, c, time.Second), nil); got != events.SettledAcked {
		t.Errorf("Settle(nil) = %s", got)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	m := fetchOne(t, c, time.Second)
	if got := s.Settle(stopped, m, errors.New("interrupted")); got != events.SettledLeft {
		t.Errorf("Settle while shutting down = %s, want left", got)
	}
	// Left messages come back at once, not after AckWait.
	if again := fetchOne(t, c, 2*time.Second); again == nil {
		t.Error("message left at shutdown was not redelivered")
	}
	if n := len(dlqMessages(t, env.JS)); n != 0 {
		t.Errorf("DLQ holds %d letters, want 0", n)
	}
}

func TestExponentialBackoff(t *testing.T) {
	b := events.ExponentialBackoff(time.Second, 10*time.Second)
	for delivered, want := range map[uint64]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 50: 10 * time.Second} {
		got := b(delivered)
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("backoff(%d) = %s, want %s ±20%%", delivered, got, want)
		}
	}
}

// The hot-path decoder and the Go type's own JSON decoding agree.
func TestDecodeAssetCreatedMatchesUnmarshal(t *testing.T) {
	for _, in := range []string{
		`{"tenant_id":"acme","asset_id":"a","service":"team_chat","owner_user_id":"u","origin":"cloud","created_at":"2026-01-01T00:00:00Z","content":{"inline":""}}`,
		`{"tenant_id":"acme","asset_id":"a","service":"team_chat","owner_user_id":"u","origin":"cloud","created_at":"2026-01-01T00:00:00Z","content":{"inline":"aGk="},"size":2,"metadata":{"k":"v"}}`,
		`{"tenant_id":"acme","asset_id":"a","service":"team_chat","owner_user_id":"u","origin":"local_upload","created_at":"2026-01-01T00:00:00Z","content":{"bucket":"KW_STAGING","object":"acme/x"},"content_type":"video/mp4"}`,
	} {
		fast, err := events.DecodeAssetCreated([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		var slow events.AssetCreated
		if err := events.Decode(events.TypeAssetCreated, []byte(in), &slow); err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(fast)
		b, _ := json.Marshal(&slow)
		if string(a) != string(b) {
			t.Errorf("decoders disagree:\n%s\n%s", a, b)
		}
	}
	if _, err := events.DecodeAssetCreated([]byte(`{"content":{"inline":"aGk=","extra":1}}`)); !errors.Is(err, events.ErrUndecodable) {
		t.Errorf("unknown content field: %v", err)
	}
}

// A held message comes back after its delay, past the Settler's
// MaxDeliver, and is never dead-lettered for being held.
func TestSettleHold(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	c := consumer(t, env.JS)
	if _, err := env.JS.Publish(ctx, events.SubjectAssetCreated("acme"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	s := &events.Settler{DLQ: events.NewDeadLetterer(env.JS, "encryptor"), MaxDeliver: 2,
		Backoff: func(uint64) time.Duration { return time.Hour }}
	held := fmt.Errorf("waiting: %w", events.Hold(150*time.Millisecond, "customer key unreachable, within the hold window"))
	m := fetchOne(t, c, 2*time.Second)
	for i := 1; i <= 3; i++ {
		start := time.Now()
		if got := s.Settle(ctx, m, held); got != events.SettledHeld {
			t.Fatalf("Settle(hold) at delivery %d = %s", i, got)
		}
		if m = fetchOne(t, c, 2*time.Second); m == nil {
			t.Fatalf("held message not redelivered after delivery %d", i)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Fatalf("held message came back after %v, want about 150ms", d)
		}
	}
	if md, _ := m.Metadata(); md.NumDelivered != 4 {
		t.Fatalf("deliveries = %d, want 4", md.NumDelivered)
	}
	if dl := dlqMessages(t, env.JS); len(dl) != 0 {
		t.Fatalf("a held message was dead-lettered: %+v", dl)
	}
}
