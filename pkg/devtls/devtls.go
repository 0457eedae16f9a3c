package devtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The files of a dev TLS directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
	CertFile  = "server.pem"
	KeyFile   = "server-key.pem"
)

// Lifetimes and names of what Ensure makes.
const (
	CACommonName     = "Keyward dev CA"
	ServerCommonName = "Keyward dev NATS server"
	CAValidity       = 10 * 365 * 24 * time.Hour
	CertValidity     = 365 * 24 * time.Hour
	// RenewBefore: a certificate that expires within this long is made
	// again on the next Ensure.
	RenewBefore = 7 * 24 * time.Hour
	// backdate covers clocks a little behind the one that signed.
	backdate = time.Hour
)

// DefaultHosts are the names every server certificate covers.
func DefaultHosts() []string { return []string{"127.0.0.1", "::1", "localhost"} }

// Options tune Ensure.
type Options struct {
	// Hosts are names or IP addresses the server certificate covers besides
	// DefaultHosts (keyward dev passes its --host). Empty entries are
	// ignored; "[::1]" is read as "::1".
	Hosts []string
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Bundle is a dev CA and the server certificate it signed.
type Bundle struct {
	// Dir holds the files; CAPath is the CA certificate clients trust,
	// CertPath and KeyPath the server's certificate and key.
	Dir, CAPath, CertPath, KeyPath string
	// CA is the CA certificate.
	CA *x509.Certificate
	// Cert is the server certificate and key (Leaf set).
	Cert tls.Certificate
	// Hosts are the names the server certificate covers, sorted.
	Hosts []string
	// NewCA and NewCert tell whether this Ensure made them.
	NewCA, NewCert bool
}

// FileError is a file of the directory Ensure cannot use.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("devtls: %s: %v (delete the directory to make a new CA; clients then need the new %s)", e.Path, e.Err, CAFile)
}

func (e *FileError) Unwrap() error { return e.Err }

// Ensure opens the dev CA in dir, making it if dir has none, and returns
// it with a current server certificate for DefaultHosts and o.Hosts.
func Ensure(dir string, o Options) (*Bundle, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devtls: %w", err)
	}
	b := &Bundle{
		Dir:      dir,
		CAPath:   filepath.Join(dir, CAFile),
		CertPath: filepath.Join(dir, CertFile),
		KeyPath:  filepath.Join(dir, KeyFile),
		Hosts:    hostSet(append(DefaultHosts(), o.Hosts...)),
	}
	caKeyPath := filepath.Join(dir, CAKeyFile)
	t := now()
	ca, caKey, err := loadPair(b.CAPath, caKeyPath)
	switch {
	case err != nil:
		return nil, err
	case ca == nil: // neither file: a new directory
	case !ca.IsCA:
		return nil, &FileError{Path: b.CAPath, Err: errors.New("not a CA certificate")}
	case t.Add(RenewBefore).After(ca.NotAfter):
		ca, caKey = nil, nil // expired or about to: make a new one
	}
	if ca == nil {
		if ca, caKey, err = newCA(t); err != nil {
			return nil, err
		}
		if err := writeKey(caKeyPath, caKey); err != nil {
			return nil, err
		}
		if err := writeCert(b.CAPath, ca); err != nil {
			return nil, err
		}
		b.NewCA = true
	}
	b.CA = ca

	// A missing, partial or unreadable server certificate is simply made
	// again: nobody depends on it but this server.
	leaf, key, err := loadPair(b.CertPath, b.KeyPath)
	if err != nil {
		leaf = nil
	}
	if leaf == nil || b.NewCA || leaf.CheckSignatureFrom(ca) != nil ||
		t.Add(RenewBefore).After(leaf.NotAfter) || t.Before(leaf.NotBefore) ||
		!slices.Equal(certHosts(leaf), b.Hosts) {
		if leaf, key, err = newServerCert(t, ca, caKey, b.Hosts); err != nil {
			return nil, err
		}
		if err := writeKey(b.KeyPath, key); err != nil {
			return nil, err
		}
		if err := writeCert(b.CertPath, leaf); err != nil {
			return nil, err
		}
		b.NewCert = true
	}
	b.Cert = tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	return b, nil
}

// ServerConfig is the TLS configuration of a server presenting the
// certificate: TLS 1.2 at least, no client certificates asked for (clients
// authenticate with their NATS credentials).
func (b *Bundle) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{b.Cert}, MinVersion: tls.VersionTLS12}
}

// Pool is a certificate pool holding only the CA.
func (b *Bundle) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(b.CA)
	return p
}

// ClientConfig is the TLS configuration of a client trusting only the CA.
func (b *Bundle) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: b.Pool(), MinVersion: tls.VersionTLS12}
}

// hostSet normalises names: trimmed, lower case, brackets dropped, IP
// addresses in their canonical form, sorted, without duplicates.
func hostSet(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func certHosts(c *x509.Certificate) []string {
	hosts := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return hostSet(hosts)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devtls: CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("devtls: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: CACommonName, Organization: []string{"Keyward dev"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	return cert, key, err
}

func newServerCert(now time.Time, ca *x509.Certificate, caKey crypto.Signer, hosts []string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devtls: server key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("devtls: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: ServerCommonName, Organization: []string{"Keyward dev"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, err := sign(tmpl, ca, key.Public(), caKey)
	return cert, key, err
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("devtls: signing %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// loadPair reads a certificate and its key. Both missing is (nil, nil,
// nil); one without the other, or either unreadable, is a *FileError.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, nil
	case certErr != nil:
		return nil, nil, &FileError{Path: certPath, Err: certErr}
	case keyErr != nil:
		return nil, nil, &FileError{Path: keyPath, Err: keyErr}
	}
	if err := tightenKeyMode(keyPath); err != nil {
		return nil, nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, &FileError{Path: certPath, Err: err}
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, &FileError{Path: keyPath, Err: errors.New("not a signing key")}
	}
	return pair.Leaf, signer, nil
}

// tightenKeyMode makes a key file readable by its owner only.
func tightenKeyMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return &FileError{Path: path, Err: err}
		}
	}
	return nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("devtls: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeCert(path string, c *x509.Certificate) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
}

// writeFile replaces path atomically: a crash leaves the old file or the
// new one, never half of one.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("devtls: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, a no-op
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("devtls: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("devtls: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("devtls: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("devtls: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("devtls: %w", err)
	}
	return nil
}
