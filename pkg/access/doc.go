// Package access is Keyward's access control on NATS's own mechanisms:
// an operator, accounts and users with nkeys and JWTs, per-user
// permissions, and service exports whose requests carry the caller.
//
// One permission matrix (matrix.go) lists every role — each worker, the
// operator CLI, producers, readers, phone systems, tenant admins — with
// the NATS account its users live in and exactly the subjects and
// JetStream API it may use. Everything else is generated from it: the
// user JWTs (Authority.Issue), the nats-server configuration
// (Authority.ServerConfig) and the table in docs/security.md (Markdown).
//
// Accounts: KEYWARD holds the streams and buckets and every identity;
// KEYWARD_SERVICES holds only the serving side of the key broker and the
// enrollment service, exported to KEYWARD and imported there with share,
// so each request arrives with the server-set Nats-Request-Info header
// naming the requesting user and its tags (CallerFrom). SYS is the
// system account, through which revocations reach running servers
// (PushAccount).
//
// Errors: ErrUnknownRole, ErrInvalidIdentity, ErrNotFound.
package access
