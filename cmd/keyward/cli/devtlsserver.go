package cli

import (
	"crypto/tls"
	"path/filepath"

	"github.com/keyward/keyward/pkg/devtls"
)

// serverTLS is the TLS configuration of the dev server: nil unless o.TLS.
// With o.TLS it opens (or makes) the dev CA and a server certificate for
// 127.0.0.1, ::1, localhost and o.Host under dataDir/tls (pkg/devtls) and
// records the CA's path in d.CAFile for the stack's own connections and
// the banner.
func (d *Dev) serverTLS(o DevOptions, dataDir string) (*tls.Config, error) {
	if !o.TLS {
		return nil, nil
	}
	b, err := devtls.Ensure(filepath.Join(dataDir, "tls"), devtls.Options{Hosts: []string{o.Host}})
	if err != nil {
		return nil, err
	}
	d.CAFile = b.CAPath
	return b.ServerConfig(), nil
}
