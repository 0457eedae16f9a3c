package access

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
)

// subjectMatches reports whether the concrete subject s matches pattern p
// (NATS wildcards * and >).
func subjectMatches(p, s string) bool {
	pt, st := strings.Split(p, "."), strings.Split(s, ".")
	for i, tok := range pt {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) || (tok != "*" && tok != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

func allowed(list []string, s string) bool {
	for _, p := range list {
		if subjectMatches(p, s) {
			return true
		}
	}
	return false
}

// catalog is every concrete subject the walk tries for each role: each
// Keyward subject of two tenants, every bucket's and stream's JetStream
// API, KV keys and Object Store subjects, and the system account's API.
func catalog() []string {
	var out []string
	for _, tenant := range []string{"acme", "globex"} {
		out = append(out,
			events.SubjectAssetCreated(tenant), events.SubjectAssetEncrypted(tenant), events.SubjectAssetRejected(tenant),
			events.SubjectAssetReencrypted(tenant), events.SubjectKeyStatus(tenant), events.SubjectKeyObserved(tenant),
			events.SubjectKeyUnwrap(tenant), events.SubjectKeyEnroll(tenant), events.SubjectPhoneAdmit(tenant),
			events.SubjectCallStarted(tenant), events.SubjectCallEnded(tenant), events.SubjectCallAction(tenant),
			events.SubjectReencryptProgress(tenant), events.SubjectRotationCompleted(tenant), events.SubjectKeyEnrolled(tenant),
			events.SubjectTenantChanged(tenant), events.SubjectDeprovisionCompleted(tenant),
		)
		for _, b := range []string{events.BucketTenants, events.BucketKeyStatus, events.BucketKeyHealthLeases, events.BucketReencryptJobs} {
			out = append(out, "$KV."+b+"."+tenant)
		}
	}
	out = append(out, events.SubjectBreaker("awskms"), events.SubjectDLQ(events.ReasonOther))
	streams := []string{}
	for _, c := range events.StreamConfigs(events.ProvisionOptions{}) {
		streams = append(streams, c.Name)
	}
	for _, c := range events.KeyValueConfigs(events.ProvisionOptions{}) {
		streams = append(streams, kvStream(c.Bucket))
	}
	for _, c := range events.ObjectStoreConfigs(events.ProvisionOptions{}) {
		streams = append(streams, objStream(c.Bucket))
		out = append(out, "$O."+c.Bucket+".C.x", "$O."+c.Bucket+".M.x")
	}
	for _, st := range streams {
		for _, op := range []string{"STREAM.INFO", "STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE",
			"STREAM.MSG.GET", "STREAM.MSG.DELETE", "DIRECT.GET", "CONSUMER.CREATE"} {
			out = append(out, "$JS.API."+op+"."+st)
		}
		out = append(out, "$JS.API.CONSUMER.CREATE."+st+".probe", "$JS.API.CONSUMER.DELETE."+st+"."+events.ConsumerEncryptor,
			"$JS.API.CONSUMER.MSG.NEXT."+st+".probe", "$JS.ACK."+st+".probe.1.1.1.1.1")
	}
	out = append(out,
		"$JS.API.CONSUMER.CREATE."+events.StreamAudit+".trail.keyward.audit.key_access.acme",
		"$JS.API.CONSUMER.CREATE."+events.StreamAudit+".trail.keyward.audit.key_access.globex",
		"$JS.API.CONSUMER.CREATE."+events.StreamAudit+".trail.keyward.audit.>",
		"$JS.API.DIRECT.GET.KV_KW_TENANTS.$KV.KW_TENANTS.acme", "$JS.API.DIRECT.GET.KV_KW_TENANTS.$KV.KW_TENANTS.globex",
		"$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.SERVER.PING", "_INBOX.someone-else")
	return out
}

var probeTimeout = 1 * time.Second

func identityFor(spec RoleSpec) Identity {
	id := Identity{Name: "walk-" + string(spec.Role), Role: spec.Role}
	if spec.Tenant {
		id.Tenant = "acme"
	}
	if spec.Scoped {
		id.Services, id.Purposes = []string{"*"}, []string{"playback"}
	}
	return id
}

// await waits for one of the two outcomes of a probe: got (the observer or
// the role saw the message: allowed) or a permissions violation on errs
// (refused). Both are events; nothing is proven by waiting for silence.
func await(got <-chan struct{}, errs <-chan error, subject string) (allowed bool, err error) {
	deadline := time.After(probeTimeout)
	for {
		select {
		case <-got:
			return true, nil
		case e := <-errs:
			if errors.Is(e, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(e.Error()), "permissions violation") {
				if strings.Contains(e.Error(), `"`+subject+`"`) || strings.HasSuffix(e.Error(), " "+subject) {
					return false, nil
				}
			}
		case <-deadline:
			return false, fmt.Errorf("neither delivered nor refused within %v", probeTimeout)
		}
	}
}

// TestMatrix walks the permission matrix both ways on a real nats-server
// running the generated configuration: for every role, every subject of
// the catalog the matrix grants is delivered, and every one it does not
// grant is refused by the server — publish and subscribe.
func TestMatrix(t *testing.T) {
	s := startTestServer(t)
	observers := map[Account]*nats.Conn{}
	for _, acc := range Accounts {
		observers[acc] = s.observer(t, acc)
	}
	subjectsToTry := catalog()
	for _, spec := range Matrix {
		t.Run(string(spec.Role), func(t *testing.T) {
			id := identityFor(spec)
			perms, err := PermissionsFor(id)
			if err != nil {
				t.Fatal(err)
			}
			nc, errs := s.connect(t, id)
			obs := observers[spec.Account]
			for _, subj := range subjectsToTry {
				// Publish: the observer of the account sees it, or the
				// server refuses it.
				got := make(chan struct{}, 1)
				osub, err := obs.Subscribe(subj, func(*nats.Msg) {
					select {
					case got <- struct{}{}:
					default:
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := obs.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := nc.Publish(subj, []byte("{}")); err != nil {
					t.Fatal(err)
				}
				want := allowed(perms.Pub.Allow, subj)
				ok, err := await(got, errs, subj)
				if err != nil {
					t.Errorf("publish %s: %v", subj, err)
				} else if ok != want {
					t.Errorf("publish %s: allowed = %v, matrix says %v", subj, ok, want)
				}
				_ = osub.Unsubscribe()

				// Subscribe: the role receives what the observer
				// publishes, or the server refuses the subscription.
				if strings.HasPrefix(subj, "$JS.") || strings.HasPrefix(subj, "$SYS.") {
					continue // API subjects are requests the server answers; publishing is what matters
				}
				got = make(chan struct{}, 1)
				rsub, err := nc.Subscribe(subj, func(*nats.Msg) {
					select {
					case got <- struct{}{}:
					default:
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				_ = nc.Flush()
				if err := obs.Publish(subj, []byte("{}")); err != nil {
					t.Fatal(err)
				}
				_ = obs.Flush()
				want = allowed(perms.Sub.Allow, subj)
				ok, err = await(got, errs, subj)
				if err != nil {
					t.Errorf("subscribe %s: %v", subj, err)
				} else if ok != want {
					t.Errorf("subscribe %s: allowed = %v, matrix says %v", subj, ok, want)
				}
				_ = rsub.Unsubscribe()
			}
		})
	}
}

// TestOwnedSubjects pins who may write what only its owner may write: the
// matrix grants each of these subjects to exactly the roles listed.
func TestOwnedSubjects(t *testing.T) {
	owners := map[string][]Role{
		"$KV.KW_KEY_STATUS.acme":               {RoleKeyHealth},
		events.SubjectKeyStatus("acme"):        {RoleKeyHealth},
		events.SubjectKeyObserved("acme"):      {RoleEncryptor, RoleReencryptor},
		events.SubjectBreaker("awskms"):        {RoleEncryptor, RoleReencryptor},
		events.SubjectAssetEncrypted("acme"):   {RoleEncryptor},
		events.SubjectAssetRejected("acme"):    {RoleEncryptor},
		events.SubjectAssetReencrypted("acme"): {RoleReencryptor},
		events.SubjectCallAction("acme"):       {RolePhonePolicy},
		events.SubjectKeyUnwrap("acme"):        {RoleReader},
		// Tenant configuration: the enrollment service's data plane and
		// the re-encryptor when a rotation or deprovisioning completes.
		// Nobody else: the operator and tenant admins change tenants
		// through the enrollment service.
		"$KV.KW_TENANTS.acme": {RoleAdmin, RoleReencryptor},
		// A tenant admin reads only its own audit trail.
		"$JS.API.CONSUMER.CREATE." + events.StreamAudit + ".trail.keyward.audit.key_access.acme":   {RoleOperator, RoleTenantAdmin},
		"$JS.API.CONSUMER.CREATE." + events.StreamAudit + ".trail.keyward.audit.key_access.globex": {RoleOperator},
		events.SubjectKeyAccess("acme"): {RoleEncryptor},
		// Tenant and key lifecycle: the enrollment service's data plane
		// announces changes; the re-encryptor only what its jobs complete.
		events.SubjectTenantChanged("acme"):        {RoleAdmin},
		events.SubjectKeyEnrolled("acme"):          {RoleAdmin},
		events.SubjectRotationCompleted("acme"):    {RoleAdmin, RoleReencryptor},
		events.SubjectDeprovisionCompleted("acme"): {RoleAdmin, RoleReencryptor},
		// A tenant admin reaches only its own tenant's enrollment subject.
		events.SubjectKeyEnroll("globex"): {RoleOperator},
		events.SubjectKeyEnroll("acme"):   {RoleOperator, RoleTenantAdmin},
	}
	for subj, want := range owners {
		var got []Role
		for _, spec := range Matrix {
			perms, err := PermissionsFor(identityFor(spec))
			if err != nil {
				t.Fatal(err)
			}
			if allowed(perms.Pub.Allow, subj) {
				got = append(got, spec.Role)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("roles that may publish %s = %v, want %v", subj, got, want)
		}
	}
}
