package events_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

const (
	oldKey = "awskms://arn:aws:kms:eu-west-2:111122223333:key/old"
	newKey = "awskms://arn:aws:kms:eu-west-2:111122223333:key/new"
)

func TestLifecycleSubjects(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{events.SubjectReencryptProgress("acme"), "keyward.reencrypt.progress.acme"},
		{events.SubjectReencryptCompleted("acme"), "keyward.reencrypt.completed.acme"},
		{events.SubjectKeyEnrolled("acme"), "keyward.lifecycle.key_enrolled.acme"},
		{events.SubjectRotationStarted("acme"), "keyward.lifecycle.rotation_started.acme"},
		{events.SubjectRotationCompleted("acme"), "keyward.lifecycle.rotation_completed.acme"},
		{events.SubjectDeprovisionScheduled("acme"), "keyward.lifecycle.deprovision_scheduled.acme"},
		{events.SubjectDeprovisionCancelled("acme"), "keyward.lifecycle.deprovision_cancelled.acme"},
		{events.SubjectDeprovisionCompleted("acme"), "keyward.lifecycle.deprovision_completed.acme"},
		{events.SubjectLifecycleTenant("acme"), "keyward.lifecycle.*.acme"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("subject = %q, want %q", tt.got, tt.want)
		}
		if strings.Contains(tt.got, "*") {
			continue
		}
		tenant, err := events.TenantFromSubject(tt.got)
		if err != nil || tenant != "acme" {
			t.Errorf("TenantFromSubject(%q) = %q, %v, want acme", tt.got, tenant, err)
		}
	}
	// Every stream's subjects are covered by the matching wildcard.
	byName := map[string][]string{}
	for _, cfg := range events.StreamConfigs(events.ProvisionOptions{}) {
		byName[cfg.Name] = cfg.Subjects
	}
	if got := byName[events.StreamReencrypt]; !slices.Equal(got, []string{"keyward.reencrypt.progress.*", "keyward.reencrypt.completed.*"}) {
		t.Errorf("%s subjects = %v", events.StreamReencrypt, got)
	}
	if got := byName[events.StreamLifecycle]; !slices.Equal(got, []string{"keyward.lifecycle.*.*"}) {
		t.Errorf("%s subjects = %v", events.StreamLifecycle, got)
	}
	if events.SubjectReencryptAll != "keyward.reencrypt.>" || events.SubjectLifecycleAll != "keyward.lifecycle.>" {
		t.Errorf("wildcards %q %q", events.SubjectReencryptAll, events.SubjectLifecycleAll)
	}
}

func TestLifecycleStreamsAndBucketProvisioned(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	for _, want := range []struct {
		name       string
		maxAge     time.Duration
		duplicates time.Duration
	}{
		{events.StreamReencrypt, 30 * 24 * time.Hour, 2 * time.Minute},
		{events.StreamLifecycle, 365 * 24 * time.Hour, 10 * time.Minute},
	} {
		s, err := env.JS.Stream(ctx, want.name)
		if err != nil {
			t.Fatalf("stream %s: %v", want.name, err)
		}
		c := s.CachedInfo().Config
		if c.MaxAge != want.maxAge || c.Duplicates != want.duplicates || c.Discard.String() != "DiscardOld" {
			t.Errorf("stream %s: max age %v, duplicates %v, discard %v", want.name, c.MaxAge, c.Duplicates, c.Discard)
		}
	}
	kv, err := env.JS.KeyValue(ctx, events.BucketReencryptJobs)
	if err != nil {
		t.Fatalf("bucket %s: %v", events.BucketReencryptJobs, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 1 || st.TTL() != 0 {
		t.Errorf("bucket %s: history %d, TTL %v; want 1 and none", events.BucketReencryptJobs, st.History(), st.TTL())
	}

	// A lifecycle event published twice with one message id is stored once.
	p := events.NewPublisher(env.JS, "test")
	e := events.DeprovisionScheduled{TenantID: "acme", At: time.Now().Add(time.Hour).UTC(), ScheduledAt: time.Now().UTC()}
	o := events.Outgoing{Subject: events.SubjectDeprovisionScheduled("acme"), MsgID: "deprovision_scheduled.acme.7", Type: events.TypeDeprovisionScheduled, Event: e}
	if _, err := p.Publish(ctx, o); err != nil {
		t.Fatal(err)
	}
	ack, err := p.Publish(ctx, o)
	if err != nil || !ack.Duplicate || ack.Stream != events.StreamLifecycle {
		t.Fatalf("second publish = %+v, %v; want a duplicate on %s", ack, err, events.StreamLifecycle)
	}
}

func validProgress() events.ReencryptionProgress {
	start := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC)
	return events.ReencryptionProgress{
		TenantID: "acme", JobID: "rotation.acme.1", Purpose: events.PurposeRotation, State: events.JobRunning,
		ToKeyURI: newKey, FromKeyURIs: []string{oldKey}, Done: 10, Left: 5, Bytes: 1000,
		RatePerSecond: 2.5, BytesPerSecond: 250, ETASeconds: 2, StartedAt: start, At: start.Add(time.Minute),
	}
}

// wantFieldError checks err is ErrInvalid and one of its FieldErrors names field.
func wantFieldError(t *testing.T, err error, field string) {
	t.Helper()
	if !errors.Is(err, events.ErrInvalid) {
		t.Errorf("Validate() = %v, want ErrInvalid naming %s", err, field)
		return
	}
	var found bool
	var walk func(error)
	walk = func(e error) {
		var fe *events.FieldError
		if errors.As(e, &fe) && fe.Field == field {
			found = true
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	if !found {
		t.Errorf("Validate() = %v, want a FieldError on %s", err, field)
	}
}

func TestReencryptionProgressValidate(t *testing.T) {
	if e := validProgress(); e.Validate() != nil {
		t.Fatalf("valid progress: %v", e.Validate())
	}
	cases := []struct {
		field  string
		mutate func(e *events.ReencryptionProgress)
	}{
		{"tenant_id", func(e *events.ReencryptionProgress) { e.TenantID = "ac.me" }},
		{"job_id", func(e *events.ReencryptionProgress) { e.JobID = "" }},
		{"purpose", func(e *events.ReencryptionProgress) { e.Purpose = "cleanup" }},
		{"state", func(e *events.ReencryptionProgress) { e.State = "done" }},
		{"reason", func(e *events.ReencryptionProgress) { e.State = events.JobPaused }},
		{"reason", func(e *events.ReencryptionProgress) { e.State = events.JobStopped }},
		{"reason", func(e *events.ReencryptionProgress) { e.Reason = "Key Gone" }},
		{"detail", func(e *events.ReencryptionProgress) { e.Detail = strings.Repeat("x", events.MaxDetailLen+1) }},
		{"to_key_uri", func(e *events.ReencryptionProgress) { e.ToKeyURI = "" }},
		{"from_key_uris", func(e *events.ReencryptionProgress) { e.FromKeyURIs = nil }},
		{"from_key_uris[0]", func(e *events.ReencryptionProgress) { e.FromKeyURIs = []string{newKey} }},
		{"from_key_uris[1]", func(e *events.ReencryptionProgress) { e.FromKeyURIs = []string{oldKey, oldKey} }},
		{"done", func(e *events.ReencryptionProgress) { e.Done = -1 }},
		{"left", func(e *events.ReencryptionProgress) { e.State = events.JobCompleted }},
		{"rate_per_second", func(e *events.ReencryptionProgress) { e.RatePerSecond = math.NaN() }},
		{"bytes_per_second", func(e *events.ReencryptionProgress) { e.BytesPerSecond = -1 }},
		{"eta_seconds", func(e *events.ReencryptionProgress) { e.ETASeconds = math.Inf(1) }},
		{"started_at", func(e *events.ReencryptionProgress) { e.StartedAt = time.Time{} }},
		{"at", func(e *events.ReencryptionProgress) { e.At = e.StartedAt.Add(-time.Second) }},
	}
	for _, c := range cases {
		e := validProgress()
		c.mutate(&e)
		wantFieldError(t, e.Validate(), c.field)
	}
	paused := validProgress()
	paused.State, paused.Reason = events.JobPaused, string(events.ReasonCustomerKeyUnavailable)
	if err := paused.Validate(); err != nil {
		t.Errorf("paused with a reason: %v", err)
	}
}

func TestLifecycleEventsValidate(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC)
	completed := events.ReencryptionCompleted{TenantID: "acme", JobID: "j", Purpose: events.PurposeHeal, ToKeyURI: newKey,
		FromKeyURIs: []string{"localkms:///fallback"}, Done: 1, StartedAt: now, CompletedAt: now.Add(time.Second)}
	enrolled := events.KeyEnrolled{TenantID: "acme", KeyURI: newKey, Role: events.EnrolledReplica, KeyVersion: "1", EnrolledAt: now}
	started := events.RotationStarted{TenantID: "acme", FromKeyURI: oldKey, ToKeyURI: newKey, ToKeyVersion: "1", StartedAt: now}
	rotated := events.RotationCompleted{TenantID: "acme", JobID: "j", RetiredKeyURIs: []string{oldKey}, ToKeyURI: newKey, Assets: 3, CompletedAt: now}
	scheduled := events.DeprovisionScheduled{TenantID: "acme", At: now, ScheduledAt: now.Add(time.Second)}
	cancelled := events.DeprovisionCancelled{TenantID: "acme", At: now, CancelledAt: now}
	deprovisioned := events.DeprovisionCompleted{TenantID: "acme", JobID: "j", KeyURIs: []string{oldKey, newKey}, Assets: 0, CompletedAt: now}
	for _, v := range []interface{ Validate() error }{&completed, &enrolled, &started, &rotated, &scheduled, &cancelled, &deprovisioned} {
		if err := v.Validate(); err != nil {
			t.Errorf("%T: %v", v, err)
		}
	}
	cases := []struct {
		field string
		bad   interface{ Validate() error }
	}{
		{"completed_at", func() *events.ReencryptionCompleted { e := completed; e.CompletedAt = now.Add(-time.Second); return &e }()},
		{"from_key_uris", func() *events.ReencryptionCompleted { e := completed; e.FromKeyURIs = []string{}; return &e }()},
		{"bytes", func() *events.ReencryptionCompleted { e := completed; e.Bytes = -5; return &e }()},
		{"key_uri", func() *events.KeyEnrolled { e := enrolled; e.KeyURI = ""; return &e }()},
		{"role", func() *events.KeyEnrolled { e := enrolled; e.Role = "retiring"; return &e }()},
		{"role", func() *events.KeyEnrolled { e := enrolled; e.Role = ""; return &e }()},
		{"key_version", func() *events.KeyEnrolled { e := enrolled; e.KeyVersion = ""; return &e }()},
		{"enrolled_at", func() *events.KeyEnrolled { e := enrolled; e.EnrolledAt = time.Time{}; return &e }()},
		{"tenant_id", func() *events.KeyEnrolled { e := enrolled; e.TenantID = "acme.>"; return &e }()},
		{"to_key_uri", func() *events.RotationStarted { e := started; e.ToKeyURI = oldKey; return &e }()},
		{"to_key_version", func() *events.RotationStarted { e := started; e.ToKeyVersion = ""; return &e }()},
		{"started_at", func() *events.RotationStarted { e := started; e.StartedAt = time.Time{}; return &e }()},
		{"retired_key_uris[0]", func() *events.RotationCompleted { e := rotated; e.RetiredKeyURIs = []string{newKey}; return &e }()},
		{"retired_key_uris", func() *events.RotationCompleted { e := rotated; e.RetiredKeyURIs = nil; return &e }()},
		{"assets", func() *events.RotationCompleted { e := rotated; e.Assets = -1; return &e }()},
		{"at", func() *events.DeprovisionScheduled { e := scheduled; e.At = time.Time{}; return &e }()},
		{"scheduled_at", func() *events.DeprovisionScheduled { e := scheduled; e.ScheduledAt = time.Time{}; return &e }()},
		{"tenant_id", func() *events.DeprovisionCancelled { e := cancelled; e.TenantID = "*"; return &e }()},
		{"cancelled_at", func() *events.DeprovisionCancelled { e := cancelled; e.CancelledAt = time.Time{}; return &e }()},
		{"key_uris", func() *events.DeprovisionCompleted { e := deprovisioned; e.KeyURIs = nil; return &e }()},
		{"job_id", func() *events.DeprovisionCompleted { e := deprovisioned; e.JobID = ""; return &e }()},
	}
	for _, c := range cases {
		wantFieldError(t, c.bad.Validate(), c.field)
	}
}

// TestInvalidProgressAgree: ReencryptionProgress documents the schema
// rejects, Go rejects too (the state rules included).
func TestInvalidProgressAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"tenant_id": "acme", "job_id": "rotation.acme.1", "purpose": "rotation", "state": "running",
			"to_key_uri": newKey, "from_key_uris": []any{oldKey},
			"done": 1, "skipped": 0, "failed": 0, "left": 2, "bytes": 10,
			"rate_per_second": 1.5, "bytes_per_second": 15, "eta_seconds": 0,
			"started_at": "2026-11-28T10:15:00Z", "at": "2026-11-28T10:16:00Z",
		}
	}
	cases := map[string]func(m map[string]any){
		"paused without reason":  func(m map[string]any) { m["state"] = "paused" },
		"stopped without reason": func(m map[string]any) { m["state"] = "stopped" },
		"completed with left":    func(m map[string]any) { m["state"] = "completed" },
		"bad state":              func(m map[string]any) { m["state"] = "finished" },
		"bad reason":             func(m map[string]any) { m["state"], m["reason"] = "paused", "Key gone" },
		"bad purpose":            func(m map[string]any) { m["purpose"] = "cleanup" },
		"no from keys":           func(m map[string]any) { m["from_key_uris"] = []any{} },
		"null from keys":         func(m map[string]any) { m["from_key_uris"] = nil },
		"repeated from key":      func(m map[string]any) { m["from_key_uris"] = []any{oldKey, oldKey} },
		"negative left":          func(m map[string]any) { m["left"] = -1 },
		"negative rate":          func(m map[string]any) { m["rate_per_second"] = -0.5 },
		"eta as string":          func(m map[string]any) { m["eta_seconds"] = "soon" },
		"unknown field":          func(m map[string]any) { m["total"] = 3 },
		"bad time":               func(m map[string]any) { m["at"] = "now" },
	}
	schemaAndGoAgree(t, "reencryption_progress.schema.json", base, decodeErr(events.DecodeReencryptionProgress), cases, map[string]mutation{
		"running": func(map[string]any) {},
		"paused":  func(m map[string]any) { m["state"], m["reason"] = "paused", "customer_key_unavailable" },
		"stopped": func(m map[string]any) {
			m["state"], m["reason"], m["detail"] = "stopped", "customer_key_revoked", "key disabled"
		},
		"completed": func(m map[string]any) { m["state"], m["left"] = "completed", 0 },
	})
}

// fuzzDecoder is the body of every lifecycle decoder's fuzz target: errors
// are classifiable, accepted events carry a safe tenant id and survive a
// stable round trip.
func fuzzDecoder[T any](t *testing.T, data []byte, decode func([]byte) (*T, error), tenant func(*T) string) {
	e, err := decode(data)
	if err != nil {
		if !errors.Is(err, events.ErrUndecodable) && !errors.Is(err, events.ErrInvalid) {
			t.Fatalf("error %v is neither undecodable nor invalid", err)
		}
		return
	}
	if events.ValidateTenantID(tenant(e)) != nil {
		t.Fatalf("accepted unsafe tenant id %q", tenant(e))
	}
	stableRoundTrip(t, e, decode)
}

func FuzzDecodeReencryptionProgress(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","job_id":"j","purpose":"rotation","state":"paused","reason":"customer_key_unavailable","to_key_uri":"b","from_key_uris":["a"],"done":1,"skipped":0,"failed":0,"left":2,"bytes":3,"rate_per_second":1.5,"bytes_per_second":4,"eta_seconds":0,"started_at":"2026-01-01T00:00:00Z","at":"2026-01-01T00:00:01Z"}`))
	f.Add([]byte(`{"state":"completed","left":1,"from_key_uris":["a","a"],"rate_per_second":-1e308}`))
	f.Add([]byte(`{"from_key_uris":null,"eta_seconds":1e309}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeReencryptionProgress, func(e *events.ReencryptionProgress) string {
			if e.State == events.JobCompleted && e.Left != 0 || (e.State == events.JobPaused || e.State == events.JobStopped) && e.Reason == "" {
				t.Fatalf("accepted %s with left %d, reason %q", e.State, e.Left, e.Reason)
			}
			return e.TenantID
		})
	})
}

func FuzzDecodeReencryptionCompleted(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","job_id":"j","purpose":"heal","to_key_uri":"b","from_key_uris":["a"],"done":1,"skipped":0,"failed":0,"bytes":3,"started_at":"2026-01-01T00:00:00Z","completed_at":"2026-01-01T00:00:01Z"}`))
	f.Add([]byte(`{"to_key_uri":"a","from_key_uris":["a"],"completed_at":"2025-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeReencryptionCompleted, func(e *events.ReencryptionCompleted) string { return e.TenantID })
	})
}

func FuzzDecodeRotationStarted(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","from_key_uri":"a","to_key_uri":"b","to_key_version":"1","started_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","from_key_uri":"a","to_key_uri":"a"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeRotationStarted, func(e *events.RotationStarted) string {
			if e.FromKeyURI == e.ToKeyURI {
				t.Fatalf("accepted a rotation from %q to itself", e.ToKeyURI)
			}
			return e.TenantID
		})
	})
}

// TestInvalidKeyEnrolledAgree: KeyEnrolled documents the schema rejects, Go
// rejects too; both accept each role.
func TestInvalidKeyEnrolledAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"tenant_id": "acme", "key_uri": newKey, "role": "primary",
			"key_version": "1", "enrolled_at": "2026-11-28T10:15:00Z",
		}
	}
	cases := map[string]func(m map[string]any){
		"retiring role":   func(m map[string]any) { m["role"] = "retiring" },
		"empty role":      func(m map[string]any) { m["role"] = "" },
		"missing role":    func(m map[string]any) { delete(m, "role") },
		"empty key":       func(m map[string]any) { m["key_uri"] = "" },
		"empty version":   func(m map[string]any) { m["key_version"] = "" },
		"missing time":    func(m map[string]any) { delete(m, "enrolled_at") },
		"bad time":        func(m map[string]any) { m["enrolled_at"] = "now" },
		"tenant wildcard": func(m map[string]any) { m["tenant_id"] = "*" },
		"unknown field":   func(m map[string]any) { m["revision"] = 3 },
	}
	schemaAndGoAgree(t, "key_enrolled.schema.json", base, decodeErr(events.DecodeKeyEnrolled), cases, map[string]mutation{
		events.EnrolledPrimary: func(m map[string]any) { m["role"] = events.EnrolledPrimary },
		events.EnrolledReplica: func(m map[string]any) { m["role"] = events.EnrolledReplica },
	})
}

func FuzzDecodeKeyEnrolled(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","key_uri":"a","role":"replica","key_version":"1","enrolled_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","key_uri":"a","role":"retiring","key_version":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeKeyEnrolled, func(e *events.KeyEnrolled) string {
			if e.Role != events.EnrolledPrimary && e.Role != events.EnrolledReplica {
				t.Fatalf("accepted role %q", e.Role)
			}
			return e.TenantID
		})
	})
}

func FuzzDecodeRotationCompleted(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","job_id":"j","retired_key_uris":["a"],"to_key_uri":"b","assets":3,"completed_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"retired_key_uris":["b"],"to_key_uri":"b","assets":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeRotationCompleted, func(e *events.RotationCompleted) string {
			if slices.Contains(e.RetiredKeyURIs, e.ToKeyURI) {
				t.Fatalf("accepted the new key %q as retired", e.ToKeyURI)
			}
			return e.TenantID
		})
	})
}

func FuzzDecodeDeprovisionScheduled(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","at":"2026-12-31T00:00:00Z","scheduled_at":"2026-11-28T10:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","at":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeDeprovisionScheduled, func(e *events.DeprovisionScheduled) string { return e.TenantID })
	})
}

func FuzzDecodeDeprovisionCancelled(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","at":"2026-12-31T00:00:00Z","cancelled_at":"2026-12-02T08:30:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","at":"2026-12-31T00:00:00+14:00"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeDeprovisionCancelled, func(e *events.DeprovisionCancelled) string { return e.TenantID })
	})
}

func FuzzDecodeDeprovisionCompleted(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","job_id":"j","key_uris":["a"],"assets":3,"completed_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"key_uris":[],"assets":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeDeprovisionCompleted, func(e *events.DeprovisionCompleted) string { return e.TenantID })
	})
}
