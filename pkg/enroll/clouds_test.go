package enroll_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/tenant"
)

// cloud is one provider's emulator as the enrollment tests drive it.
type cloud struct {
	name    string
	faults  *kmstest.Faults
	option  kms.ClientOption
	newKey  func(t *testing.T) kms.KeyURI
	disable func(t *testing.T, key kms.KeyURI)
	missing func(t *testing.T) kms.KeyURI
	// permitted are the only data-plane operations the provider may call;
	// decryptOp is the one a key policy without decrypt rights refuses.
	permitted []string
	decryptOp string
	// decryptGrant is what the refusal must tell the tenant to grant.
	decryptGrant string
	// authOps are identity-service requests the emulator also logs.
	authOps []string
}

func clouds(t *testing.T) []cloud {
	ctx := t.Context()
	aws := awsemu.StartT(t, awsemu.WithRegion("eu-west-2"))
	awsProvider, err := aws.Provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oci := ociemu.StartT(t, ociemu.WithRegion("us-phoenix-1"))
	ociProvider, err := oci.Provider()
	if err != nil {
		t.Fatal(err)
	}
	az := azureemu.StartT(t)
	azProvider, err := az.Provider()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	return []cloud{{
		name: "aws", faults: aws.Server.Faults,
		option: kms.WithProvider(kms.SchemeAWS, awsProvider),
		newKey: func(t *testing.T) kms.KeyURI {
			k, err := aws.CreateKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return k
		},
		disable: func(t *testing.T, k kms.KeyURI) {
			if err := aws.DisableKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		},
		missing:   func(*testing.T) kms.KeyURI { return aws.MissingKey() },
		permitted: []string{"GenerateDataKey", "Encrypt", "Decrypt"}, decryptOp: "Decrypt",
		decryptGrant: "kms:Decrypt",
	}, {
		name: "oci", faults: oci.Server.Faults,
		option:    kms.WithProvider(kms.SchemeOCI, ociProvider),
		newKey:    func(*testing.T) kms.KeyURI { return oci.CreateKey() },
		disable:   func(_ *testing.T, k kms.KeyURI) { oci.DisableKey(k) },
		missing:   func(*testing.T) kms.KeyURI { return oci.UnknownKey() },
		permitted: []string{ociemu.OpEncrypt, ociemu.OpDecrypt}, decryptOp: ociemu.OpDecrypt,
		decryptGrant: "request.operation='Decrypt'",
	}, {
		name: "azure", faults: az.Server.Faults,
		option: kms.WithProvider(kms.SchemeAzure, azProvider),
		newKey: func(*testing.T) kms.KeyURI {
			n++
			return az.CreateRSAKey("acme-vault", fmt.Sprintf("key-%d", n))
		},
		disable: func(_ *testing.T, k kms.KeyURI) { az.DisableKey(k) },
		missing: func(*testing.T) kms.KeyURI {
			k := az.CreateRSAKey("acme-vault", "deleted")
			az.DeleteKey(k)
			return k
		},
		permitted: []string{azureemu.OpWrapKey, azureemu.OpUnwrapKey}, decryptOp: azureemu.OpUnwrapKey,
		decryptGrant: "unwrapKey",
		authOps:      []string{azureemu.OpToken, azureemu.OpDiscovery},
	}}
}

// Each provider, through its real SDK and its emulator: a working key is
// enrolled after a round trip that used only the permitted operations; each
// failure the tenant can cause is refused with the reason and stores
// nothing.
func TestEnrollThroughEmulators(t *testing.T) {
	cs := clouds(t)
	opts := make([]kms.ClientOption, 0, len(cs)+1)
	for _, c := range cs {
		opts = append(opts, c.option)
	}
	opts = append(opts, kms.WithCallTimeout(3*time.Second))
	r := newRig(t, opts...)
	for _, c := range cs {
		t.Run(c.name, func(t *testing.T) {
			tid := "acme-" + c.name
			key := c.newKey(t)
			c.faults.ResetLog()
			resp, e := r.add(tid, key.String(), tenant.RolePrimary)
			if e != nil {
				t.Fatalf("enroll a working key: %v", e)
			}
			if resp.Key.URI != key.String() || resp.KeyVersion == "" {
				t.Fatalf("response %+v", resp)
			}
			// The response names the platform identities that will use the
			// key (what the CLI shows), for the key's region.
			if want := platform.Default().Identities(key); len(want) == 0 || !slices.Equal(resp.Identities, want) {
				t.Fatalf("identities %+v, want %+v", resp.Identities, want)
			}
			ops := c.faults.Ops()
			for op := range ops {
				if !slices.Contains(c.permitted, op) && !slices.Contains(c.authOps, op) {
					t.Errorf("enrollment called %s; only %v are permitted (log %v)", op, c.permitted, ops)
				}
			}
			if ops[c.decryptOp] == 0 {
				t.Errorf("enrollment never called %s: %v", c.decryptOp, ops)
			}

			before, err := r.store.Get(context.Background(), tid)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				after, err := r.store.Get(context.Background(), tid)
				if err != nil || after.Revision != before.Revision {
					t.Errorf("refused enrollments changed tenant %s: %+v, %v", tid, after, err)
				}
			}()
			t.Run("decrypt permission missing", func(t *testing.T) {
				c.faults.Deny(c.decryptOp)
				defer c.faults.Allow(c.decryptOp)
				refusedFresh(t, r, c, c.newKey(t), enroll.CodePermissionMissing, c.decryptGrant)
			})
			t.Run("disabled key", func(t *testing.T) {
				k := c.newKey(t)
				c.disable(t, k)
				refusedFresh(t, r, c, k, enroll.CodeKeyUnusable, "disabled")
			})
			t.Run("missing key", func(t *testing.T) {
				refusedFresh(t, r, c, c.missing(t), enroll.CodeKeyUnusable, "no such key")
			})
			t.Run("endpoint refuses connections", func(t *testing.T) {
				c.faults.Set(kmstest.FaultRefuse)
				defer c.faults.Set(kmstest.FaultNone)
				// Admin operations bypass the faults: the key exists.
				refusedFresh(t, r, c, c.newKey(t), enroll.CodeUnreachable, "could not be reached")
			})
			t.Run("throttled", func(t *testing.T) {
				c.faults.Set(kmstest.FaultThrottle)
				defer c.faults.Set(kmstest.FaultNone)
				refusedFresh(t, r, c, c.newKey(t), enroll.CodeThrottled, "try again")
			})
		})
	}
}

// refusedFresh enrolls key as the primary of a new tenant and expects a
// refusal with code (mentioning mention) that creates no tenant.
func refusedFresh(t *testing.T, r *rig, c cloud, key kms.KeyURI, code, mention string) {
	t.Helper()
	tid := "fresh-" + c.name
	_, e := r.add(tid, key.String(), tenant.RolePrimary)
	if e == nil || e.Code != code || !strings.Contains(e.Message, mention) {
		t.Fatalf("error = %+v, want %s mentioning %q", e, code, mention)
	}
	if _, err := r.store.Get(context.Background(), tid); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("a refused enrollment created tenant %s: %v", tid, err)
	}
}

// An OCI vault in a region the platform does not serve is refused before
// any request reaches it.
func TestEnrollOCIRegionNotServed(t *testing.T) {
	oci := ociemu.StartT(t, ociemu.WithRegion("eu-frankfurt-1"))
	p, err := oci.Provider()
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, kms.WithProvider(kms.SchemeOCI, p))
	_, e := r.add("acme", oci.CreateKey().String(), tenant.RolePrimary)
	if e == nil || e.Code != enroll.CodeRegionNotServed || !strings.Contains(e.Message, "eu-frankfurt-1") || !strings.Contains(e.Message, "us-ashburn-1") {
		t.Fatalf("error = %+v, want region_not_served naming the region and the served ones", e)
	}
	if n := len(oci.Server.Faults.Requests()); n != 0 {
		t.Fatalf("%d requests reached a vault in a region not served", n)
	}
	if _, err := r.store.Get(context.Background(), "acme"); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("refused enrollment created the tenant: %v", err)
	}
}
