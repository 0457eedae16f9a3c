package access

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/nats-io/jwt/v2"
)

// CredsPath is where EnsureCreds keeps name's credentials under dir.
func CredsPath(dir, name string) string { return filepath.Join(dir, name+".creds") }

// EnsureCreds makes sure dir holds a current credentials file
// (<name>.creds, 0600) for every identity: one that is unrevoked, of the
// same role and scope, with the matrix's current permissions. A file that
// is missing, revoked or stale is replaced by a newly issued one and the
// stale credential is revoked. It returns the path of each identity's file.
func (a *Authority) EnsureCreds(dir string, ids []Identity) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	paths := map[string]string{}
	for _, id := range ids {
		path := CredsPath(dir, id.Name)
		ok, err := a.credsCurrent(path, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			if _, found := a.Current(id.Name); found {
				if _, _, err := a.Revoke(id.Name); err != nil {
					return nil, err
				}
			}
			creds, _, err := a.Issue(id)
			if err != nil {
				return nil, err
			}
			if err := writeFileAtomic(path, creds, 0o600); err != nil {
				return nil, err
			}
		}
		paths[id.Name] = path
	}
	return paths, nil
}

func (a *Authority) credsCurrent(path string, id Identity) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("access: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return false, nil
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return false, nil
	}
	rec, ok := a.Current(id.Name)
	if !ok || rec.UserKey != uc.Subject || !reflect.DeepEqual(rec.Identity, id) {
		return false, nil
	}
	want, err := PermissionsFor(id)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(uc.Permissions, want), nil
}
