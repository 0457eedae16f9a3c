package devtls_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/devtls"
)

func ensure(t *testing.T, dir string, o devtls.Options) *devtls.Bundle {
	t.Helper()
	b, err := devtls.Ensure(dir, o)
	if err != nil {
		t.Fatalf("Ensure(%s) err = %v", dir, err)
	}
	return b
}

// verify checks the server certificate against a pool built from the CA
// file on disk, as a client given --nats-ca would.
func verify(t *testing.T, b *devtls.Bundle, name string) error {
	t.Helper()
	pem, err := os.ReadFile(b.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", b.CAPath)
	}
	leaf, err := x509.ParseCertificate(b.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestChainVerifiesForTheNames(t *testing.T) {
	b := ensure(t, t.TempDir(), devtls.Options{Hosts: []string{"devbox.internal", "10.1.2.3"}})
	if !b.NewCA || !b.NewCert {
		t.Errorf("a new directory: NewCA %v, NewCert %v, want both", b.NewCA, b.NewCert)
	}
	for _, name := range []string{"127.0.0.1", "::1", "localhost", "devbox.internal", "10.1.2.3"} {
		if err := verify(t, b, name); err != nil {
			t.Errorf("Verify(%s) err = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"example.com", "10.1.2.4", "0.0.0.0"} {
		if err := verify(t, b, name); err == nil {
			t.Errorf("Verify(%s) err = nil, want a hostname error", name)
		}
	}
	if got, want := b.Hosts, []string{"10.1.2.3", "127.0.0.1", "::1", "devbox.internal", "localhost"}; !slices.Equal(got, want) {
		t.Errorf("Hosts = %v, want %v", got, want)
	}
	ca := b.CA
	if ca.Subject.CommonName != devtls.CACommonName || !ca.IsCA || !ca.MaxPathLenZero {
		t.Errorf("CA %q IsCA %v MaxPathLenZero %v", ca.Subject.CommonName, ca.IsCA, ca.MaxPathLenZero)
	}
	for _, c := range []*x509.Certificate{ca, b.Cert.Leaf} {
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s: key %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life < devtls.CAValidity || life > devtls.CAValidity+2*time.Hour {
		t.Errorf("CA valid for %s, want 10 years", life)
	}
	if life := b.Cert.Leaf.NotAfter.Sub(b.Cert.Leaf.NotBefore); life < devtls.CertValidity || life > devtls.CertValidity+2*time.Hour {
		t.Errorf("server certificate valid for %s, want 1 year", life)
	}
	if !slices.Equal(b.Cert.Leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("server certificate usages %v, want server auth only", b.Cert.Leaf.ExtKeyUsage)
	}
}

// A real TLS handshake with the server configuration: a client trusting
// the CA connects, one with the system roots does not.
func TestHandshake(t *testing.T) {
	b := ensure(t, t.TempDir(), devtls.Options{})
	srv := b.ServerConfig()
	if srv.MinVersion != tls.VersionTLS12 {
		t.Errorf("server MinVersion = %x, want TLS 1.2", srv.MinVersion)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), b.ClientConfig())
	if err != nil {
		t.Fatalf("Dial with the CA err = %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	c.Close()

	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS12})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Dial without the CA err = %v, want x509.UnknownAuthorityError", err)
	}
}

func TestKeysArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	b := ensure(t, dir, devtls.Options{})
	for _, f := range []string{devtls.CAKeyFile, devtls.KeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	// A key made readable by others is tightened on the next open.
	if err := os.Chmod(b.KeyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	ensure(t, dir, devtls.Options{})
	if fi, _ := os.Stat(b.KeyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("after reopening, %s mode %o, want 0600", b.KeyPath, fi.Mode().Perm())
	}
	// No stray temporary files.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Errorf("dir holds %d files, want 4: %v", len(ents), ents)
	}
}

func TestReopenKeepsTheCA(t *testing.T) {
	dir := t.TempDir()
	first := ensure(t, dir, devtls.Options{Hosts: []string{"127.0.0.1"}})
	caPEM, _ := os.ReadFile(first.CAPath)

	again := ensure(t, dir, devtls.Options{})
	if again.NewCA || again.NewCert {
		t.Errorf("reopen: NewCA %v, NewCert %v, want neither", again.NewCA, again.NewCert)
	}
	if !again.CA.Equal(first.CA) || !again.Cert.Leaf.Equal(first.Cert.Leaf) {
		t.Error("reopen changed the CA or the server certificate")
	}

	// Another host: a new server certificate from the same CA.
	moved := ensure(t, dir, devtls.Options{Hosts: []string{"192.168.7.7"}})
	if moved.NewCA || !moved.NewCert || !moved.CA.Equal(first.CA) {
		t.Errorf("new host: NewCA %v, NewCert %v, same CA %v; want a new certificate only", moved.NewCA, moved.NewCert, moved.CA.Equal(first.CA))
	}
	if err := verify(t, moved, "192.168.7.7"); err != nil {
		t.Errorf("Verify(192.168.7.7) err = %v", err)
	}

	// Expired (a year and a day later): a new certificate, same CA.
	later := time.Now().Add(devtls.CertValidity + 24*time.Hour)
	renewed := ensure(t, dir, devtls.Options{Hosts: []string{"192.168.7.7"}, Now: func() time.Time { return later }})
	if renewed.NewCA || !renewed.NewCert || !renewed.CA.Equal(first.CA) {
		t.Errorf("expired: NewCA %v, NewCert %v; want a new certificate only", renewed.NewCA, renewed.NewCert)
	}
	if !renewed.Cert.Leaf.NotAfter.After(later) {
		t.Errorf("renewed certificate expires %s, before %s", renewed.Cert.Leaf.NotAfter, later)
	}
	if got, _ := os.ReadFile(first.CAPath); !bytes.Equal(got, caPEM) {
		t.Error("ca.pem changed on disk")
	}

	// A damaged server certificate is made again, too.
	if err := os.WriteFile(first.CertPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b := ensure(t, dir, devtls.Options{}); !b.NewCert || b.NewCA {
		t.Errorf("damaged certificate: NewCA %v, NewCert %v", b.NewCA, b.NewCert)
	}
}

// A CA Ensure cannot read is never replaced: clients may trust it.
func TestUnreadableCAIsNotReplaced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(dir string) error
	}{
		{"key missing", func(dir string) error { return os.Remove(filepath.Join(dir, devtls.CAKeyFile)) }},
		{"certificate missing", func(dir string) error { return os.Remove(filepath.Join(dir, devtls.CAFile)) }},
		{"certificate garbage", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, devtls.CAFile), []byte("garbage"), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ensure(t, dir, devtls.Options{})
			if err := tc.spoil(dir); err != nil {
				t.Fatal(err)
			}
			_, err := devtls.Ensure(dir, devtls.Options{})
			var fe *devtls.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Ensure err = %v, want *devtls.FileError", err)
			}
		})
	}
}

// The server certificate names the IP addresses as IP SANs, so clients
// dialling an address verify it.
func TestIPAddressesAreIPSANs(t *testing.T) {
	b := ensure(t, t.TempDir(), devtls.Options{Hosts: []string{"[::1]", " LocalHost ", ""}})
	if got, want := b.Hosts, []string{"127.0.0.1", "::1", "localhost"}; !slices.Equal(got, want) {
		t.Errorf("Hosts = %v, want %v", got, want)
	}
	var ips []string
	for _, ip := range b.Cert.Leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Contains(ips, net.IPv6loopback.String()) || !slices.Contains(ips, "127.0.0.1") || !slices.Equal(b.Cert.Leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("IPs %v, DNS names %v", ips, b.Cert.Leaf.DNSNames)
	}
}
