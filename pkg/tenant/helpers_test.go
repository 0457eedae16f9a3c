package tenant

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

const (
	awsPrimary = "awskms://arn:aws:kms:eu-west-2:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
	awsReplica = "awskms://arn:aws:kms:eu-west-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
	azureKey   = "azurekv://acme-vault.vault.azure.net/keys/keyward"
	ociKey     = "ocikms://ocid1.key.oc1.iad.exampleaaaa.exampleuniqueid?endpoint=https://exampleaaaa-crypto.kms.us-ashburn-1.oraclecloud.com"
	localKey   = "localkms:///var/lib/keyward/keys/tenant.key"
)

var enrolled = time.Date(2026, 1, 15, 9, 0, 0, 0, time.UTC)

// validConfig is a complete, valid configuration; tests change one thing.
func validConfig() *Config {
	return &Config{
		TenantID:    "acme",
		DisplayName: "Acme Corp",
		Keys: []Key{
			{URI: awsPrimary, Role: RolePrimary, EnrolledAt: enrolled},
			{URI: awsReplica, Role: RoleReplica, EnrolledAt: enrolled.Add(time.Hour)},
		},
		Services:      []string{"cloud_recording", "phone_recording"},
		LicensedUsers: []string{"u-alice", "u-bob"},
		Recipients:    []string{"security@acme.example"},
		Fallback:      true,
		Phone:         PhoneSettings{DropCalls: true},
	}
}

// fieldsOf returns the Field of every *events.FieldError joined in err, in
// order. It fails the test if err holds anything else.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var fields []string
	for _, e := range errs {
		var fe *events.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v (%T) is not a *events.FieldError", e, e)
		}
		if !errors.Is(e, events.ErrInvalid) {
			t.Errorf("error %v does not match events.ErrInvalid", e)
		}
		fields = append(fields, fe.Field)
	}
	return fields
}

func fieldErrors(err error) []*events.FieldError {
	var out []*events.FieldError
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		var fe *events.FieldError
		if errors.As(err, &fe) {
			out = append(out, fe)
		}
		return out
	}
	for _, e := range j.Unwrap() {
		var fe *events.FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		}
	}
	return out
}

// startJetStream runs a real in-process nats-server with JetStream on a
// random loopback port (natstest, without Keyward's provisioning: each test
// creates what it needs) and returns a JetStream client connected to it.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	return natstest.Start(t, natstest.WithoutProvisioning()).JS
}

// tenantsBucket creates KW_TENANTS as provisioning would.
func tenantsBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.CreateKeyValue(testContext(t), jetstream.KeyValueConfig{Bucket: events.BucketTenants, History: 5})
	if err != nil {
		t.Fatalf("CreateKeyValue(%s): %v", events.BucketTenants, err)
	}
	return kv
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
