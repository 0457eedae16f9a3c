package encryptor_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/encryptor/encryptor"
)

// clouds are the emulated customer KMSs of a cloud stack: AWS KMS in two
// regions (a primary and a replica, one account), OCI Vault and Azure Key
// Vault, each reached through its real SDK.
type clouds struct {
	aws, awsReplica *awsemu.Emulator
	oci             *ociemu.Emulator
	azure           *azureemu.Emulator
}

// newCloudStack is a stack whose KMS client has every provider, wired to
// the emulators, with the seed cache configured by seeds.
func newCloudStack(t *testing.T, seeds kms.SeedCacheConfig, opts ...cloudOption) (*stack, *clouds) {
	t.Helper()
	ctx := t.Context()
	c := &clouds{
		aws:        awsemu.StartT(t, awsemu.WithRegion("eu-west-2")),
		awsReplica: awsemu.StartT(t, awsemu.WithRegion("eu-west-1")),
		oci:        ociemu.StartT(t, ociemu.WithRegion("us-ashburn-1")),
		azure:      azureemu.StartT(t),
	}
	// One platform identity for both AWS regions, as in production.
	creds, err := c.aws.Credentials().Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.awsReplica.AllowCredentials(creds)
	awsP, err := c.aws.Provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ociP, err := c.oci.Provider()
	if err != nil {
		t.Fatal(err)
	}
	azP, err := c.azure.Provider()
	if err != nil {
		t.Fatal(err)
	}
	var o cloudOptions
	for _, opt := range opts {
		opt(&o)
	}
	s := newStackNoWorker(t, o.worker...)
	s.client = kms.NewClient(append([]kms.ClientOption{
		kms.WithProvider(kms.SchemeLocal, localkms.New()),
		kms.WithProvider(kms.SchemeAWS, awsP),
		kms.WithProvider(kms.SchemeOCI, ociP),
		kms.WithProvider(kms.SchemeAzure, azP),
		kms.WithCallTimeout(2 * time.Second)}, o.client...)...)
	s.seeds = kms.NewSeedCache(s.client, seeds)
	s.start()
	return s, c
}

type cloudOptions struct {
	client []kms.ClientOption
	worker []func(*encryptor.Options)
}

type cloudOption func(*cloudOptions)

func withClientOptions(opts ...kms.ClientOption) cloudOption {
	return func(o *cloudOptions) { o.client = append(o.client, opts...) }
}

func withWorkerOptions(opts ...func(*encryptor.Options)) cloudOption {
	return func(o *cloudOptions) { o.worker = append(o.worker, opts...) }
}

// enrollKey enrolls key through the enrollment service the worker hosts
// (the live round trip included) and waits for the worker to see it.
func (s *stack) enrollKey(tenantID string, key kms.KeyURI, role tenant.KeyRole) {
	s.t.Helper()
	resp, err := enroll.NewClient(s.env.NC, 20*time.Second).Add(context.Background(),
		enroll.Request{TenantID: tenantID, KeyURI: key.String(), Role: role})
	if err != nil {
		s.t.Fatalf("enroll %s for %s: %v", key, tenantID, err)
	}
	s.eventually("the worker to see tenant "+tenantID, func() bool {
		c, ok := s.worker.Tenant(tenantID)
		return ok && c.Revision >= resp.Revision
	})
}

// setFallback turns the tenant's fallback on or off.
func (s *stack) setFallback(tenantID string, on bool) {
	s.t.Helper()
	cfg, err := s.tenants.Get(context.Background(), tenantID)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.Fallback = on
	s.apply(cfg)
}

// The encryptor end to end on each provider: an asset (inline and staged)
// for a tenant whose key lives in that cloud is encrypted under the
// customer key and reads back, and the platform called only the
// operations the customer's policy grants.
func TestEncryptorOnEachCloud(t *testing.T) {
	s, c := newCloudStack(t, kms.DefaultSeedCacheConfig())
	ctx := t.Context()
	awsKey, err := c.aws.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		key       kms.KeyURI
		faults    *kmstest.Faults
		permitted []string
	}{
		{"aws", awsKey, c.aws.Server.Faults, []string{"GenerateDataKey", "Encrypt", "Decrypt"}},
		{"oci", c.oci.CreateKey(), c.oci.Server.Faults, []string{ociemu.OpEncrypt, ociemu.OpDecrypt}},
		{"azure-rsa", c.azure.CreateRSAKey("acme-vault", "assets"), c.azure.Server.Faults,
			[]string{azureemu.OpWrapKey, azureemu.OpUnwrapKey, azureemu.OpToken, azureemu.OpDiscovery}},
		{"azure-hsm", c.azure.CreateOctKey("acme-hsm", "hsm-assets"), c.azure.Server.Faults,
			[]string{azureemu.OpWrapKey, azureemu.OpUnwrapKey, azureemu.OpToken, azureemu.OpDiscovery}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tid := "acme-" + tc.name
			tc.faults.ResetLog()
			s.enrollKey(tid, tc.key, tenant.RolePrimary)
			for j, size := range []int{1 << 10, 300 << 10} { // inline and staged
				data := pattern(size, byte(10*i+j))
				id := "asset-" + string(rune('a'+j))
				e := s.mustEncrypt(tid, id, data)
				if e.Mode != events.ModeCustomer || e.KeyURI != tc.key.String() || e.KeyVersion == "" {
					t.Fatalf("%s: mode %s under %s (version %q), want customer under %s", id, e.Mode, e.KeyURI, e.KeyVersion, tc.key)
				}
				got, err := s.get(tid, id)
				if err != nil {
					t.Fatalf("read %s back: %v", id, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s read back differs", id)
				}
			}
			ops := tc.faults.Ops()
			for op := range ops {
				if !slices.Contains(tc.permitted, op) {
					t.Errorf("the platform called %s; only %v are permitted (log %v)", op, tc.permitted, ops)
				}
			}
			if len(ops) == 0 {
				t.Error("no request reached the emulator")
			}
		})
	}
}

// enrollWithReplica enrolls a primary key in AWS eu-west-2 and a replica
// in eu-west-1 for tenant tid.
func enrollWithReplica(t *testing.T, s *stack, c *clouds, tid string) (primary, replica kms.KeyURI) {
	t.Helper()
	primary, err := c.aws.CreateKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if replica, err = c.awsReplica.CreateKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.enrollKey(tid, primary, tenant.RolePrimary)
	s.enrollKey(tid, replica, tenant.RoleReplica)
	return primary, replica
}

// A tenant with a primary and a replica: when the primary's endpoint is
// down the replica wraps the asset's key; when both are down the tenant's
// fallback choice decides; every asset reads back once its key is back.
func TestEncryptorUsesReplicaBeforeFallback(t *testing.T) {
	// A seed per asset, so every asset asks the KMS.
	cfg := kms.DefaultSeedCacheConfig()
	cfg.MaxUses = 1
	cfg.DecryptMaxAge = time.Nanosecond
	s, c := newCloudStack(t, cfg)
	const tid = "acme"
	primary, replica := enrollWithReplica(t, s, c, tid)

	data := map[string][]byte{}
	put := func(id string, mode events.Mode, key kms.KeyURI) {
		t.Helper()
		data[id] = pattern(2<<10, byte(len(data)))
		e := s.mustEncrypt(tid, id, data[id])
		if e.Mode != mode || (!key.IsZero() && e.KeyURI != key.String()) {
			t.Fatalf("%s: mode %s under %s, want %s under %v", id, e.Mode, e.KeyURI, mode, key)
		}
	}
	put("healthy", events.ModeCustomer, primary)

	c.aws.Server.Faults.Set(kmstest.FaultRefuse)
	put("primary-down", events.ModeCustomer, replica)

	c.awsReplica.Server.Faults.Set(kmstest.FaultRefuse)
	// Fallback is off (enrollment's default): the asset is not stored.
	out := s.put(tid, "both-down-strict", pattern(1<<10, 9))
	if out.Rejected == nil || out.Rejected.Reason != events.ReasonCustomerKeyUnavailable {
		t.Fatalf("both keys down, fallback off: %+v", out)
	}
	s.setFallback(tid, true)
	put("both-down", events.ModeFallback, s.fallback)

	// The replica's asset reads while the primary is still down.
	c.awsReplica.Server.Faults.Set(kmstest.FaultNone)
	for _, id := range []string{"primary-down", "both-down"} {
		got, err := s.get(tid, id)
		if err != nil || !bytes.Equal(got, data[id]) {
			t.Fatalf("read %s with the primary down: %v", id, err)
		}
	}
	c.aws.Server.Faults.Set(kmstest.FaultNone)
	for id, want := range data {
		got, err := s.get(tid, id)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %s: %v", id, err)
		}
	}
}

// A tenant with a primary and a replica on another endpoint: once the
// primary's endpoint breaker is open, assets go to the replica at once —
// no call reaches the primary's hanging endpoint and no asset waits for
// its timeout — and another endpoint's breaker is not touched.
func TestReplicaWhenThePrimaryEndpointIsOpen(t *testing.T) {
	cfg := kms.DefaultSeedCacheConfig()
	cfg.MaxUses = 1
	set := breaker.New(breaker.WithConsecutiveFailures(2), breaker.WithOpenTimeout(time.Minute))
	// Every asset tries the key itself (no shared observations), so only
	// the breaker keeps them from the hanging endpoint.
	s, c := newCloudStack(t, cfg, withClientOptions(kms.WithGuard(set)),
		withWorkerOptions(func(o *encryptor.Options) { o.ObservationTTL = -1 }))
	const tid = "acme"
	primary, replica := enrollWithReplica(t, s, c, tid)
	if e := s.mustEncrypt(tid, "healthy", pattern(1<<10, 1)); e.KeyURI != primary.String() {
		t.Fatalf("healthy: under %s", e.KeyURI)
	}

	c.aws.Server.Faults.Set(kmstest.FaultHang)
	defer c.aws.Server.Faults.Set(kmstest.FaultNone)
	// Two timeouts open the primary endpoint's breaker; those assets go to
	// the replica after their wait.
	for i := 0; set.State(primary.EndpointID()) != breaker.Open; i++ {
		if i == 5 {
			t.Fatalf("the primary endpoint's breaker is %s after %d timeouts", set.State(primary.EndpointID()), i)
		}
		if e := s.mustEncrypt(tid, fmt.Sprintf("tripping-%d", i), pattern(1<<10, 2)); e.KeyURI != replica.String() {
			t.Fatalf("tripping: under %s, want the replica", e.KeyURI)
		}
	}
	c.aws.Server.Faults.ResetLog()
	for i := range 10 {
		start := time.Now()
		e := s.mustEncrypt(tid, fmt.Sprintf("open-%d", i), pattern(1<<10, 3))
		if e.Mode != events.ModeCustomer || e.KeyURI != replica.String() {
			t.Fatalf("breaker open: mode %s under %s, want customer under the replica", e.Mode, e.KeyURI)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("asset %d took %s with the primary's breaker open", i, took)
		}
	}
	if reqs := c.aws.Server.Faults.Requests(); len(reqs) != 0 {
		t.Errorf("%d calls reached the primary's endpoint while its breaker was open", len(reqs))
	}
	if st := set.State(replica.EndpointID()); st != breaker.Closed {
		t.Errorf("the replica endpoint's breaker is %s", st)
	}
}
