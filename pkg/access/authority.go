package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Authority holds a deployment's NATS operator, its accounts' signing keys
// and the registry of issued identities, in one directory (0700):
//
//	operator.nk              the operator's seed
//	accounts/<ACCOUNT>.nk    each account's seed
//	identities.json          every identity issued: role, scope, user key, issued/revoked
//
// It issues user credentials with the matrix's permissions, revokes them
// (the account JWT lists the revoked user keys), and writes the
// nats-server configuration that trusts the operator. Nothing here is
// home-made authentication: the server verifies every JWT itself.
type Authority struct {
	dir string

	mu       sync.Mutex
	operator nkeys.KeyPair
	accounts map[Account]nkeys.KeyPair
	reg      []Record
}

// Identity is one NATS user: a name, a role and, where the role is scoped,
// its scope.
type Identity struct {
	// Name is unique in the deployment: [a-z0-9][a-z0-9-]{0,62}. It names
	// the credentials file and the user's inbox prefix (_INBOX.<name>).
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Tenant scopes a tenant-admin.
	Tenant string `json:"tenant,omitempty"`
	// Services and Purposes scope a reader or producer ("*": all).
	Services []string `json:"services,omitempty"`
	Purposes []string `json:"purposes,omitempty"`
}

// Record is an issued identity in the registry.
type Record struct {
	Identity
	UserKey   string     `json:"user_key"`
	IssuedAt  time.Time  `json:"issued_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Revoked reports whether the record's credential was revoked.
func (r Record) Revoked() bool { return r.RevokedAt != nil }

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Errors the authority returns, for errors.Is.
var (
	ErrUnknownRole     = errors.New("unknown role")
	ErrInvalidIdentity = errors.New("invalid identity")
	ErrNotFound        = errors.New("no such identity")
)

// Validate checks an identity against the matrix.
func (id Identity) Validate() error {
	var errs []error
	if !nameRe.MatchString(id.Name) {
		errs = append(errs, fmt.Errorf("name %q: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit", id.Name))
	}
	spec, ok := Spec(id.Role)
	if !ok {
		errs = append(errs, fmt.Errorf("%w %q: want one of %s", ErrUnknownRole, id.Role, strings.Join(RoleNames(), ", ")))
	} else {
		if spec.Tenant && id.Tenant == "" {
			errs = append(errs, fmt.Errorf("role %s needs a tenant (--tenant)", id.Role))
		}
		if !spec.Tenant && id.Tenant != "" {
			errs = append(errs, fmt.Errorf("role %s is not scoped to a tenant: drop --tenant", id.Role))
		}
		if !spec.Scoped && (len(id.Services) > 0 || len(id.Purposes) > 0) {
			errs = append(errs, fmt.Errorf("role %s has no service or purpose scope: drop --services and --purposes", id.Role))
		}
	}
	if id.Tenant != "" && !tenantRe.MatchString(id.Tenant) {
		errs = append(errs, fmt.Errorf("tenant %q: want [a-z0-9][a-z0-9-]{0,62}", id.Tenant))
	}
	for _, s := range append(append([]string{}, id.Services...), id.Purposes...) {
		if s != "*" && !scopeRe.MatchString(s) {
			errs = append(errs, fmt.Errorf("scope %q: want a snake_case name or *", s))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidIdentity, err)
	}
	return nil
}

var (
	tenantRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	scopeRe  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// RoleNames lists the roles of the matrix.
func RoleNames() []string {
	var out []string
	for _, s := range Matrix {
		out = append(out, string(s.Role))
	}
	return out
}

// Open loads the authority in dir, creating the operator and the accounts
// the first time.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(filepath.Join(dir, "accounts"), 0o700); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	a := &Authority{dir: dir, accounts: map[Account]nkeys.KeyPair{}}
	var err error
	if a.operator, err = loadOrCreateSeed(filepath.Join(dir, "operator.nk"), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	for _, acc := range Accounts {
		kp, err := loadOrCreateSeed(filepath.Join(dir, "accounts", string(acc)+".nk"), nkeys.CreateAccount)
		if err != nil {
			return nil, err
		}
		a.accounts[acc] = kp
	}
	b, err := os.ReadFile(a.registryPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("access: %w", err)
	default:
		if err := json.Unmarshal(b, &a.reg); err != nil {
			return nil, fmt.Errorf("access: %s: %w", a.registryPath(), err)
		}
	}
	return a, nil
}

func loadOrCreateSeed(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			return nil, fmt.Errorf("access: %s is not an nkey seed: %w", path, err)
		}
		return kp, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("access: %w", err)
	}
	kp, err := create()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, append(seed, '\n'), 0o600); err != nil {
		return nil, err
	}
	return kp, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("access: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("access: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("access: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("access: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("access: %w", err)
	}
	return nil
}

func (a *Authority) registryPath() string { return filepath.Join(a.dir, "identities.json") }

func (a *Authority) saveLocked() error {
	b, err := json.MarshalIndent(a.reg, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(a.registryPath(), append(b, '\n'), 0o600)
}

// Dir is the authority's directory.
func (a *Authority) Dir() string { return a.dir }

// AccountKey is the public key of acc.
func (a *Authority) AccountKey(acc Account) string {
	pub, _ := a.accounts[acc].PublicKey()
	return pub
}

// Identities returns the registry, sorted by name, newest issue last.
func (a *Authority) Identities() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := append([]Record(nil), a.reg...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Current returns the newest unrevoked record of name.
func (a *Authority) Current(name string) (Record, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.currentLocked(name)
}

func (a *Authority) currentLocked(name string) (Record, bool) {
	for i := len(a.reg) - 1; i >= 0; i-- {
		if a.reg[i].Name == name && !a.reg[i].Revoked() {
			return a.reg[i], true
		}
	}
	return Record{}, false
}

// Issue creates a new user for id, signed by its role's account with the
// matrix's permissions, records it, and returns its credentials file
// (the JWT and the user's seed, as nats.UserCredentials and `nats --creds`
// read them). An earlier credential of the same name stays valid until it
// is revoked.
func (a *Authority) Issue(id Identity) ([]byte, Record, error) {
	if err := id.Validate(); err != nil {
		return nil, Record{}, err
	}
	spec, _ := Spec(id.Role)
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, Record{}, err
	}
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = id.Name
	uc.IssuerAccount = ""
	perms, err := PermissionsFor(id)
	if err != nil {
		return nil, Record{}, err
	}
	uc.Permissions = perms
	uc.Tags.Add(Tags(id)...)
	userJWT, err := uc.Encode(a.accounts[spec.Account])
	if err != nil {
		return nil, Record{}, fmt.Errorf("access: signing %s: %w", id.Name, err)
	}
	seed, err := user.Seed()
	if err != nil {
		return nil, Record{}, err
	}
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		return nil, Record{}, err
	}
	rec := Record{Identity: id, UserKey: pub, IssuedAt: time.Unix(uc.IssuedAt, 0).UTC()}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reg = append(a.reg, rec)
	if err := a.saveLocked(); err != nil {
		a.reg = a.reg[:len(a.reg)-1]
		return nil, Record{}, err
	}
	return creds, rec, nil
}

// Revoke revokes every unrevoked credential of name and returns the
// account JWT that carries the revocation (push it to running servers
// with PushAccount; the next ServerConfig includes it).
func (a *Authority) Revoke(name string) (Account, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now().UTC()
	var acc Account
	found := false
	for i := range a.reg {
		if a.reg[i].Name == name && !a.reg[i].Revoked() {
			a.reg[i].RevokedAt = &now
			spec, _ := Spec(a.reg[i].Role)
			acc, found = spec.Account, true
		}
	}
	if !found {
		return "", "", fmt.Errorf("%w %q (keyward access list shows the identities)", ErrNotFound, name)
	}
	if err := a.saveLocked(); err != nil {
		return "", "", err
	}
	j, err := a.accountJWTLocked(acc)
	return acc, j, err
}

// Tags are the credential's JWT tags, which the server hands to the
// services a request crosses into (Nats-Request-Info): the role and the
// scope, e.g. keyward-role:reader, keyward-service:cloud_recording,
// keyward-purpose:playback, keyward-tenant:acme.
func Tags(id Identity) []string {
	t := []string{TagRole + string(id.Role)}
	if id.Tenant != "" {
		t = append(t, TagTenant+id.Tenant)
	}
	for _, s := range id.Services {
		t = append(t, TagService+s)
	}
	for _, p := range id.Purposes {
		t = append(t, TagPurpose+p)
	}
	return t
}

// Tag prefixes of a credential's scope.
const (
	TagRole    = "keyward-role:"
	TagTenant  = "keyward-tenant:"
	TagService = "keyward-service:"
	TagPurpose = "keyward-purpose:"
)

// InboxPrefix is the only inbox an identity may subscribe to
// (_INBOX.<name>.>); its client must use it (nats.CustomInboxPrefix,
// `nats --inbox-prefix _INBOX.<name>`), so no identity can read another's
// replies.
func InboxPrefix(name string) string { return "_INBOX." + name }

// PermissionsFor expands the identity's role row of the matrix into NATS
// user permissions: allow lists only (everything else is denied), the
// tenant placeholder filled in, the identity's own inbox added.
func PermissionsFor(id Identity) (jwt.Permissions, error) {
	spec, ok := Spec(id.Role)
	if !ok {
		return jwt.Permissions{}, fmt.Errorf("%w %q", ErrUnknownRole, id.Role)
	}
	fill := func(in []string) []string {
		var out []string
		for _, s := range in {
			s = strings.ReplaceAll(s, roleTenantPlacehold, id.Tenant)
			s = strings.ReplaceAll(s, "{name}", id.Name)
			out = append(out, s)
		}
		return out
	}
	var p jwt.Permissions
	p.Pub.Allow = fill(spec.Grants.Pub)
	p.Sub.Allow = fill(spec.Grants.Sub)
	if spec.Account != AccountServices {
		p.Sub.Allow = append(p.Sub.Allow, InboxPrefix(id.Name)+".>")
	}
	if len(p.Pub.Allow) == 0 {
		// An empty allow list means "everything": deny it all instead.
		p.Pub.Deny = []string{">"}
	}
	if len(p.Sub.Allow) == 0 {
		p.Sub.Deny = []string{">"}
	}
	if spec.Grants.Responses {
		p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return p, nil
}

// AccountJWT returns the signed JWT of acc: its imports, exports, limits
// and revocations, from the matrix and the registry.
func (a *Authority) AccountJWT(acc Account) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accountJWTLocked(acc)
}

func (a *Authority) accountJWTLocked(acc Account) (string, error) {
	kp := a.accounts[acc]
	pub, _ := kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = string(acc)
	// Deny-all default: a user without explicit permissions gets nothing.
	ac.DefaultPermissions.Pub.Deny = []string{">"}
	ac.DefaultPermissions.Sub.Deny = []string{">"}
	switch acc {
	case AccountKeyward:
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1, MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1}
		for _, s := range ServiceExports {
			ac.Imports.Add(&jwt.Import{
				Name: s, Subject: jwt.Subject(s), Account: a.AccountKey(AccountServices),
				Type: jwt.Service, Share: true,
			})
		}
	case AccountServices:
		for _, s := range ServiceExports {
			ac.Exports.Add(&jwt.Export{
				Name: s, Subject: jwt.Subject(s), Type: jwt.Service,
				ResponseType: jwt.ResponseTypeSingleton,
			})
		}
	}
	ac.Revocations = jwt.RevocationList{}
	for _, r := range a.reg {
		if r.RevokedAt == nil {
			continue
		}
		if spec, _ := Spec(r.Role); spec.Account == acc {
			// Revoke every JWT of this user key issued up to now.
			ac.Revocations[r.UserKey] = r.RevokedAt.Unix()
		}
	}
	return ac.Encode(a.operator)
}

// OperatorJWT returns the operator's self-signed JWT naming the system
// account.
func (a *Authority) OperatorJWT() (string, error) {
	pub, _ := a.operator.PublicKey()
	oc := jwt.NewOperatorClaims(pub)
	oc.Name = "keyward"
	oc.SystemAccount = a.AccountKey(AccountSystem)
	return oc.Encode(a.operator)
}

// ServerConfigOptions tune the generated nats-server configuration.
type ServerConfigOptions struct {
	// ResolverDir is where the server keeps account JWTs (the full
	// resolver, so `keyward access revoke` reaches a running server).
	ResolverDir string
}

// ServerConfig returns the authorization part of a nats-server
// configuration: the trusted operator, the system account, a full account
// resolver preloaded with every account (with its current revocations).
// The same text configures `keyward dev`'s embedded server and a
// production server (include it from the server's main file).
func (a *Authority) ServerConfig(o ServerConfigOptions) (string, error) {
	op, err := a.OperatorJWT()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# Generated by keyward from pkg/access (the permission matrix). Do not edit:\n")
	b.WriteString("# regenerate with `keyward access server-config`.\n")
	fmt.Fprintf(&b, "operator: %q\n", op)
	fmt.Fprintf(&b, "system_account: %q\n", a.AccountKey(AccountSystem))
	// A user's JWT travels in its CONNECT line; the workers' permission
	// lists make it larger than the default 4 KiB.
	b.WriteString("max_control_line: 65536\n")
	fmt.Fprintf(&b, "resolver: {\n  type: full\n  dir: %q\n  allow_delete: false\n  interval: \"2m\"\n  timeout: \"2s\"\n}\n", o.ResolverDir)
	b.WriteString("resolver_preload: {\n")
	for _, acc := range Accounts {
		j, err := a.AccountJWT(acc)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "  %s: %q\n", a.AccountKey(acc), j)
	}
	b.WriteString("}\n")
	return b.String(), nil
}
