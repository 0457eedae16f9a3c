package access

import (
	"strings"

	"github.com/keyward/keyward/pkg/events"
)

// The permission matrix: every role Keyward knows, the NATS account its
// users live in, and exactly the subjects and JetStream API each may use.
// This file is the only place permissions are written; the user JWTs
// (Authority.Issue), the server configuration (Authority.ServerConfig) and
// the table in docs/security.md (Markdown) are generated from it, and
// TestMatrix walks it both ways against a real nats-server.

// Account is a NATS account of a Keyward deployment.
type Account string

const (
	// AccountKeyward holds Keyward's JetStream streams and buckets and every
	// identity that uses them: the workers' data-plane users, the operator,
	// producers, readers, phone systems and tenant admins.
	AccountKeyward Account = "KEYWARD"
	// AccountServices holds only the serving side of the request-reply
	// services that must know who is asking (the key broker, the
	// enrollment service). Its services are exported to AccountKeyward and
	// imported there with share, so every request that reaches them crosses
	// an account boundary and carries the requester's identity in the
	// server-set Nats-Request-Info header: a client cannot forge it, and no
	// identity can publish to these subjects inside AccountServices.
	AccountServices Account = "KEYWARD_SERVICES"
	// AccountSystem is the NATS system account: server events, and the
	// claim updates that revoke a credential on a running server.
	AccountSystem Account = "SYS"
)

// Accounts lists every account, in the order they are created.
var Accounts = []Account{AccountSystem, AccountKeyward, AccountServices}

// ServiceExports are the request-reply services AccountServices exports to
// AccountKeyward (imported there with share): every request to them
// carries the caller's identity.
var ServiceExports = []string{events.SubjectKeyUnwrapAll, events.SubjectKeyEnrollAll}

// Role is what an identity is for. An identity is one NATS user with the
// role's permissions, scoped (tenant, services, purposes) where the role
// says so.
type Role string

// The roles. Names are stable: they appear in credentials, tags and docs.
const (
	RoleProvisioner     Role = "provisioner"
	RoleOperator        Role = "operator"
	RoleEncryptor       Role = "encryptor"
	RoleKeyBroker       Role = "key-broker"
	RoleKeyHealth       Role = "key-health-monitor"
	RoleReencryptor     Role = "re-encryptor"
	RoleNotifier        Role = "notifier"
	RolePhonePolicy     Role = "phone-policy"
	RoleAdmin           Role = "admin"
	RoleEnrollment      Role = "enrollment"
	RoleProducer        Role = "producer"
	RoleReader          Role = "reader"
	RolePhone           Role = "phone"
	RoleTenantAdmin     Role = "tenant-admin"
	RoleSystem          Role = "system"
	RoleBench           Role = "bench"
	roleTenantPlacehold      = "{tenant}"
)

// Grants are the subjects a user may publish and subscribe to. A subject
// may contain {tenant}, replaced with the identity's tenant for a
// tenant-scoped role.
type Grants struct {
	Pub []string
	Sub []string
	// Responses lets the user answer requests it received (reply subjects
	// it was not granted otherwise): request-reply services.
	Responses bool
}

// RoleSpec is one row of the matrix.
type RoleSpec struct {
	Role    Role
	Account Account
	// Summary says who holds the role.
	Summary string
	// Tenant: the role is scoped to one tenant (Identity.Tenant required).
	Tenant bool
	// Scoped: the role is scoped to services and purposes (readers,
	// producers): the scope travels in the credential's tags and is
	// enforced by the service that reads the caller's identity.
	Scoped bool
	// Must not: what the role is refused, in words, for docs/security.md;
	// TestMatrix proves each.
	MustNot []string
	Grants  Grants
}

func join(parts ...string) string { return strings.Join(parts, ".") }

// JetStream API building blocks. Stream names of buckets follow the
// server's conventions: KV_<bucket>, OBJ_<bucket>.
func kvStream(bucket string) string  { return "KV_" + bucket }
func objStream(bucket string) string { return "OBJ_" + bucket }

// streamInfo allows looking a stream up (also how a KV or Object Store
// handle is opened).
func streamInfo(stream string) []string {
	return []string{"$JS.API.STREAM.INFO." + stream}
}

// streamGet allows reading single messages by sequence or subject.
func streamGet(stream string) []string {
	return []string{
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
	}
}

// consume allows ordered (ephemeral) consumers and the named durable
// consumers on stream: create, info, fetch, acknowledge, flow control.
func consume(stream string, durables ...string) []string {
	names := durables
	if len(names) == 0 {
		names = []string{"*"}
	}
	var s []string
	for _, n := range names {
		s = append(s,
			"$JS.API.CONSUMER.CREATE."+stream+"."+n,
			"$JS.API.CONSUMER.CREATE."+stream+"."+n+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+stream+"."+n,
			"$JS.API.CONSUMER.INFO."+stream+"."+n,
			"$JS.API.CONSUMER.DELETE."+stream+"."+n,
			"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+n,
			"$JS.ACK."+stream+"."+n+".>",
		)
	}
	return append(s, "$JS.API.CONSUMER.CREATE."+stream, "$JS.FC."+stream+".>")
}

// ordered allows ordered (ephemeral) consumers only: their names are
// random, so the grant names any consumer of the stream; durable
// consumers of the stream are protected by their owners' config checks.
func ordered(stream string) []string { return consume(stream) }

func read(stream string) []string {
	return concat(streamInfo(stream), streamGet(stream), ordered(stream))
}

func kvRead(bucket string) []string { return read(kvStream(bucket)) }

// kvWrite allows put, create, update, delete and purge of keys (tenant
// scoped when key is given).
func kvWrite(bucket, key string) []string {
	if key == "" {
		key = ">"
	}
	return []string{"$KV." + bucket + "." + key}
}

// objRead allows reading objects of a bucket (meta by direct get, chunks
// by an ordered consumer).
func objRead(bucket string) []string { return read(objStream(bucket)) }

// objWrite allows putting and deleting objects (chunks, meta, and the
// purge of an overwritten or deleted object's chunks).
func objWrite(bucket string) []string {
	return []string{
		"$O." + bucket + ".C.>",
		"$O." + bucket + ".M.>",
		"$JS.API.STREAM.PURGE." + objStream(bucket),
	}
}

func concat(parts ...[]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range parts {
		for _, s := range p {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

func subjects(s ...string) []string { return s }

var (
	dlq          = subjects(events.SubjectDLQAll)
	observed     = subjects(events.SubjectKeyObservedAll)
	lifecycleAll = subjects(events.SubjectLifecycleEvents)
	jsInfo       = subjects("$JS.API.INFO")
)

// Matrix is the permission matrix.
var Matrix = []RoleSpec{
	{
		Role: RoleProvisioner, Account: AccountKeyward,
		Summary: "creates and updates Keyward's streams and buckets (keyward dev at start, `keyward provision` in production); nothing else",
		MustNot: []string{"read or write any message", "publish any Keyward event"},
		Grants:  Grants{Pub: concat(jsInfo, provisioning())},
	},
	{
		Role: RoleOperator, Account: AccountKeyward,
		Summary: "the platform operator's CLI: status, dead letters and redrive, re-encryption status, tenant changes through the enrollment service (it reads KW_TENANTS, never writes it), asset put for checks",
		MustNot: []string{
			"write a key status (KW_KEY_STATUS), a key observation, a breaker event, an asset outcome (KW_ASSETS) or a phone action",
			"write KW_TENANTS directly: every tenant change goes through the enrollment service",
			"ask the key broker for a key (keyward.key.unwrap.*): reading content takes a reader identity",
			"create, update or delete streams",
		},
		Grants: Grants{Pub: concat(jsInfo,
			subjects("$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*"),
			read(events.StreamIngest), read(events.StreamAssets), read(events.StreamDLQ), read(events.StreamKeys),
			read(events.StreamReencrypt), read(events.StreamLifecycle), read(events.StreamPhone), read(events.StreamAudit),
			subjects("$JS.API.CONSUMER.INFO."+events.StreamIngest+".*", "$JS.API.CONSUMER.INFO."+events.StreamAssets+".*"),
			kvRead(events.BucketTenants),
			kvRead(events.BucketKeyStatus), kvRead(events.BucketReencryptJobs), kvRead(events.BucketKeyHealthLeases),
			objRead(events.BucketVault), objRead(events.BucketStaging), objWrite(events.BucketStaging),
			// Redrive republishes a dead letter to where it came from:
			// producers' subjects only.
			subjects(events.SubjectAssetCreatedAll, "keyward.phone.call.*.*"),
			subjects("$JS.API.STREAM.MSG.DELETE."+events.StreamDLQ),
			subjects(events.SubjectKeyEnrollAll),
		)},
	},
	{
		Role: RoleEncryptor, Account: AccountKeyward,
		Summary: "the encryptor: consumes KW_INGEST, reads staged content, writes ciphertext to KW_VAULT and outcomes to KW_ASSETS",
		MustNot: []string{"write tenant configuration or key statuses", "publish phone actions", "ask the key broker for a key"},
		Grants: Grants{Pub: concat(jsInfo,
			streamInfo(events.StreamIngest), consume(events.StreamIngest, events.ConsumerEncryptor),
			read(events.StreamAssets),
			subjects(events.SubjectAssetEncryptedAll, events.SubjectAssetRejectedAll),
			objRead(events.BucketStaging), objWrite(events.BucketStaging),
			objRead(events.BucketVault), objWrite(events.BucketVault),
			kvRead(events.BucketTenants), kvRead(events.BucketKeyStatus),
			observed, dlq, subjects(events.SubjectBreakerAll),
			// The outcome of an asset, told to its producer's inbox
			// (Keyward-Notify).
			subjects("_INBOX.*.>"),
			// The key broker's release and refusal records (KW_AUDIT),
			// published with the encryptor's identity: the broker's
			// serving identity publishes nothing but replies.
			subjects(events.SubjectKeyAccessAll),
		)},
	},
	{
		Role: RoleKeyBroker, Account: AccountServices,
		Summary: "the key broker's serving side: answers keyward.key.unwrap.<tenant> (imported into KEYWARD with the caller's identity); its ledger and KMS client are the encryptor's",
		MustNot: []string{"publish anything but replies", "use JetStream"},
		Grants:  Grants{Sub: subjects(events.SubjectKeyUnwrapAll, "$SRV.>"), Responses: true},
	},
	{
		Role: RoleEnrollment, Account: AccountServices,
		Summary: "the enrollment service's serving side: answers keyward.key.enroll.<tenant> with the caller's identity",
		MustNot: []string{"publish anything but replies", "use JetStream"},
		Grants:  Grants{Sub: subjects(events.SubjectKeyEnrollAll, "$SRV.>"), Responses: true},
	},
	{
		Role: RoleAdmin, Account: AccountKeyward,
		Summary: "the enrollment service's data plane: writes tenant configuration (KW_TENANTS) and publishes lifecycle events",
		MustNot: []string{"read content or ciphertext", "write key statuses or asset outcomes"},
		Grants: Grants{Pub: concat(jsInfo,
			kvRead(events.BucketTenants), kvWrite(events.BucketTenants, ""),
			lifecycleAll, streamInfo(events.StreamLifecycle), streamGet(events.StreamLifecycle),
		)},
	},
	{
		Role: RoleKeyHealth, Account: AccountKeyward,
		Summary: "the key-health-monitor: probes keys, owns KW_KEY_STATUS and keyward.key.status.*, hears observations",
		MustNot: []string{"write tenant configuration", "read ciphertext or staged content"},
		Grants: Grants{
			Pub: concat(jsInfo,
				kvRead(events.BucketTenants),
				kvRead(events.BucketKeyStatus), kvWrite(events.BucketKeyStatus, ""),
				kvRead(events.BucketKeyHealthLeases), kvWrite(events.BucketKeyHealthLeases, ""),
				subjects(events.SubjectKeyStatusAll), read(events.StreamKeys), dlq,
			),
			Sub: observed,
		},
	},
	{
		Role: RoleReencryptor, Account: AccountKeyward,
		Summary: "the re-encryptor: heals fallback copies, rotates and deprovisions; rewrites KW_VAULT objects and records AssetReencrypted",
		MustNot: []string{"write key statuses", "consume KW_INGEST", "publish phone actions"},
		Grants: Grants{Pub: concat(jsInfo,
			read(events.StreamAssets), subjects(events.SubjectAssetReencryptedAll),
			kvRead(events.BucketTenants), kvWrite(events.BucketTenants, ""),
			kvRead(events.BucketKeyStatus),
			kvRead(events.BucketReencryptJobs), kvWrite(events.BucketReencryptJobs, ""),
			objRead(events.BucketVault), objWrite(events.BucketVault),
			// Only the two lifecycle events it owns: never TenantChanged,
			// KeyEnrolled or the deprovisioning schedule (the enrollment
			// service's, which the notifier mails).
			subjects(events.SubjectReencryptAll, events.SubjectRotationCompleted("*"), events.SubjectDeprovisionCompleted("*")),
			subjects("$JS.API.CONSUMER.INFO."+events.StreamIngest+"."+events.ConsumerEncryptor),
			observed, dlq, subjects(events.SubjectBreakerAll),
		)},
	},
	{
		Role: RoleNotifier, Account: AccountKeyward,
		Summary: "the notifier: reads key, lifecycle, re-encryption and rejection events and tenant recipients; sends email",
		MustNot: []string{"write anything but dead letters", "read content or ciphertext"},
		Grants: Grants{Pub: concat(jsInfo,
			kvRead(events.BucketTenants),
			read(events.StreamKeys), read(events.StreamLifecycle), read(events.StreamReencrypt), read(events.StreamAssets),
			dlq,
		)},
	},
	{
		Role: RolePhonePolicy, Account: AccountKeyward,
		Summary: "the phone-policy worker: answers keyward.phone.admit.<tenant>, follows live calls, publishes call actions",
		MustNot: []string{"write tenant configuration or key statuses", "read content"},
		Grants: Grants{
			Pub: concat(jsInfo,
				kvRead(events.BucketTenants), kvRead(events.BucketKeyStatus),
				read(events.StreamPhone), subjects(events.SubjectCallActionAll), dlq,
			),
			Sub:       subjects(events.SubjectPhoneAdmitAll, events.SubjectBreakerAll, "$SRV.>"),
			Responses: true,
		},
	},
	{
		Role: RoleProducer, Account: AccountKeyward, Scoped: true,
		Summary: "a platform service that produces assets: stages content and publishes AssetCreated",
		MustNot: []string{"ask the key broker for a key", "read ciphertext", "publish asset outcomes, key statuses or phone actions", "read or write tenant configuration"},
		Grants: Grants{Pub: concat(jsInfo,
			subjects(events.SubjectAssetCreatedAll),
			streamInfo(objStream(events.BucketStaging)), objWrite(events.BucketStaging),
		)},
	},
	{
		Role: RoleReader, Account: AccountKeyward, Scoped: true,
		Summary: "a platform service that reads content (viewer, transcription, export): ciphertext from KW_VAULT, the asset's key from the key broker for its services and purposes",
		MustNot: []string{"write anything", "read staged content", "read tenant configuration"},
		Grants: Grants{Pub: concat(jsInfo,
			objRead(events.BucketVault), subjects(events.SubjectKeyUnwrapAll),
		)},
	},
	{
		Role: RolePhone, Account: AccountKeyward,
		Summary: "a phone system: asks for call admissions, reports calls, hears call actions",
		MustNot: []string{"publish call actions", "ask the key broker for a key", "read or write tenant configuration"},
		Grants: Grants{
			Pub: concat(jsInfo, subjects(events.SubjectPhoneAdmitAll, events.SubjectCallEventsAll)),
			Sub: subjects(events.SubjectCallActionAll),
		},
	},
	{
		Role: RoleTenantAdmin, Account: AccountKeyward, Tenant: true,
		Summary: "a tenant's administrator: enrolls, rotates and deprovisions the tenant's keys through the enrollment service, reads the tenant's own configuration and its own audit trail (KW_AUDIT filtered to the tenant)",
		MustNot: []string{"change or read another tenant", "write KW_TENANTS directly", "ask the key broker for a key"},
		Grants: Grants{Pub: concat(jsInfo,
			subjects(prefixOf(events.SubjectKeyEnrollAll)+roleTenantPlacehold),
			streamInfo(kvStream(events.BucketTenants)),
			subjects("$JS.API.DIRECT.GET."+kvStream(events.BucketTenants)+".$KV."+events.BucketTenants+"."+roleTenantPlacehold),
			// Its own audit trail: an ordered consumer filtered to the
			// tenant (the filter is part of the create subject).
			tenantTrail(),
		)},
	},
	{
		Role: RoleBench, Account: AccountKeyward,
		Summary: "`keyward bench` (dev only): the raw JetStream baseline on its own stream BENCH_RAW, and the pipeline measured as a producer that reads the outcomes",
		MustNot: []string{"ask the key broker for a key", "write tenant configuration, key statuses or asset outcomes", "create, update or delete Keyward's streams"},
		Grants: Grants{Pub: concat(jsInfo,
			subjects("$JS.API.STREAM.CREATE."+BenchStream, "$JS.API.STREAM.DELETE."+BenchStream), read(BenchStream),
			subjects(BenchSubjects),
			subjects(events.SubjectAssetCreatedAll), streamInfo(objStream(events.BucketStaging)), objWrite(events.BucketStaging),
			read(events.StreamAssets),
		)},
	},
	{
		Role: RoleSystem, Account: AccountSystem,
		Summary: "the NATS system account user: pushes account updates (revocations) to running servers",
		MustNot: []string{"reach any Keyward subject (it lives in the system account)"},
		Grants:  Grants{Pub: subjects("$SYS.REQ.>")},
	},
}

// provisioning allows creating, updating and looking up every declared
// stream and bucket (and no other: NATS wildcards are whole tokens, so each
// name is listed).
func provisioning() []string {
	o := events.ProvisionOptions{}
	var names []string
	for _, c := range events.StreamConfigs(o) {
		names = append(names, c.Name)
	}
	for _, c := range events.KeyValueConfigs(o) {
		names = append(names, kvStream(c.Bucket))
	}
	for _, c := range events.ObjectStoreConfigs(o) {
		names = append(names, objStream(c.Bucket))
	}
	var out []string
	for _, n := range names {
		out = append(out, "$JS.API.STREAM.CREATE."+n, "$JS.API.STREAM.UPDATE."+n, "$JS.API.STREAM.INFO."+n)
	}
	return out
}

// tenantTrail lets a tenant admin read its own tenant's KW_AUDIT records
// and nothing else: consumers are created with the filter subject in the
// API subject ($JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>), which the
// permission pins to keyward.audit.*.<tenant>.
func tenantTrail() []string {
	st := events.StreamAudit
	return []string{
		"$JS.API.STREAM.INFO." + st,
		"$JS.API.CONSUMER.CREATE." + st + ".*.keyward.audit.*." + roleTenantPlacehold,
		"$JS.API.CONSUMER.MSG.NEXT." + st + ".*",
		"$JS.API.CONSUMER.DELETE." + st + ".*",
		"$JS.FC." + st + ".>",
	}
}

func prefixOf(wildcard string) string { return strings.TrimSuffix(wildcard, "*") }

// BenchStream is the stream of the benchmarks' raw JetStream baseline, and
// BenchSubjects its subjects (role bench).
const (
	BenchStream   = "BENCH_RAW"
	BenchSubjects = "bench.>"
)

// Spec returns the matrix row of role.
func Spec(r Role) (RoleSpec, bool) {
	for _, s := range Matrix {
		if s.Role == r {
			return s, true
		}
	}
	return RoleSpec{}, false
}
