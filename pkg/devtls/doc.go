// Package devtls makes the local certificate authority and the server
// certificate of `keyward dev --tls`, so that NATS traffic on a developer's
// machine is encrypted and the clients verify whom they talk to.
//
// Ensure(dir, Options) keeps four files in dir (0700):
//
//	ca.pem          the CA certificate clients trust (NATS_CA, --nats-ca, nats --tlsca)
//	ca-key.pem      its private key (0600)
//	server.pem      the server certificate, signed by the CA
//	server-key.pem  its private key (0600)
//
// The CA (ECDSA P-256, CommonName "Keyward dev CA", valid 10 years) is made
// once and kept: re-opening the directory returns the same CA, so clients
// that trust it keep working across restarts. The server certificate
// (ECDSA P-256, valid 1 year, server authentication only) names
// 127.0.0.1, ::1, localhost and Options.Hosts; it is made again when it is
// missing, expires within RenewBefore, names a different set of hosts, or
// was not signed by the CA in dir. A CA that has expired is made again
// too (its clients must fetch the new ca.pem). Key files are always
// written 0600, and a looser mode found on open is tightened.
//
// This is a development CA: its key lives next to the certificate on the
// developer's disk. Production servers take their certificates from the
// deployment's own PKI.
//
// Errors: a CA certificate without its key (or the reverse), or files that
// do not parse, are reported as *FileError naming the file; Ensure never
// replaces a CA it cannot read, because clients may trust it.
package devtls
