package localkms

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/kms"
)

// Format is the value of the "format" field of every key file.
const Format = "keyward-localkms/v1"

const (
	maxKeyFileSize = 1 << 20 // far more than any real key file
	maxVersions    = 1000
)

// keyFile is the JSON document of a key file:
//
//	{"format":"keyward-localkms/v1","key_id":"<32 hex>","disabled":false,
//	 "versions":[{"id":"1","created_at":"2025-01-02T03:04:05Z","material":"<base64 of 32 bytes>"}]}
//
// The last version is the newest: it wraps; every version unwraps.
type keyFile struct {
	Format   string       `json:"format"`
	KeyID    string       `json:"key_id"`
	Disabled bool         `json:"disabled"`
	Versions []keyVersion `json:"versions"`
}

type keyVersion struct {
	ID        string `json:"id"`
	CreatedAt string `json:"created_at"`
	Material  string `json:"material"`
}

var (
	keyIDRe     = regexp.MustCompile(`^[0-9a-f]{32}$`)
	versionIDRe = regexp.MustCompile(`^[1-9][0-9]{0,8}$`)
)

func (kf *keyFile) version(id string) *keyVersion {
	for i := range kf.Versions {
		if kf.Versions[i].ID == id {
			return &kf.Versions[i]
		}
	}
	return nil
}

// fileMu serialises the read-modify-write functions of this package within
// the process. Key files are not meant to be changed by two processes at once.
var fileMu sync.Mutex

// fileError is a key file error with a code; Op and Key are filled in by the
// caller.
func fileError(code kms.Code, format string, args ...any) *kms.Error {
	return &kms.Error{Code: code, Provider: kms.SchemeLocal, Err: fmt.Errorf(format, args...)}
}

// readKeyFile reads and validates the key file at path. Errors are *kms.Error:
// CodeKeyNotFound (missing), CodeAccessDenied (unreadable, or readable by
// group or others), CodeInternal (malformed; the message names the file and
// never quotes key material).
func readKeyFile(path string) (*keyFile, error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fileError(kms.CodeKeyNotFound, "key file %s does not exist: %w", path, fs.ErrNotExist)
	case errors.Is(err, fs.ErrPermission):
		return nil, fileError(kms.CodeAccessDenied, "cannot read key file %s: %w", path, fs.ErrPermission)
	case err != nil:
		return nil, fileError(kms.CodeInternal, "cannot open key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(kms.CodeInternal, "cannot stat key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fileError(kms.CodeInternal, "key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fileError(kms.CodeAccessDenied,
			"key file %s is accessible by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(data)
	if err != nil {
		return nil, fileError(kms.CodeInternal, "cannot read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fileError(kms.CodeInternal, "key file %s is malformed: larger than %d bytes", path, maxKeyFileSize)
	}
	kf, err := parseKeyFile(data)
	if err != nil {
		return nil, fileError(kms.CodeInternal, "key file %s is malformed: %v", path, err)
	}
	return kf, nil
}

func parseKeyFile(data []byte) (*keyFile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var kf keyFile
	if err := dec.Decode(&kf); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JSON at byte %d", se.Offset)
		}
		return nil, errors.New("invalid JSON or unknown field (want format, key_id, disabled, versions[id, created_at, material])")
	}
	if dec.More() {
		return nil, errors.New("data after the JSON document")
	}
	switch {
	case kf.Format != Format:
		// The value is not quoted: a mangled file could have anything there.
		return nil, fmt.Errorf("format is not %q", Format)
	case !keyIDRe.MatchString(kf.KeyID):
		return nil, errors.New("key_id is not 32 lowercase hex digits")
	case len(kf.Versions) == 0:
		return nil, errors.New("no versions")
	case len(kf.Versions) > maxVersions:
		return nil, fmt.Errorf("more than %d versions", maxVersions)
	}
	seen := make(map[string]bool, len(kf.Versions))
	for i, v := range kf.Versions {
		if !versionIDRe.MatchString(v.ID) {
			return nil, fmt.Errorf("versions[%d].id is not a decimal number from 1", i)
		}
		if seen[v.ID] {
			return nil, fmt.Errorf("version id %s appears twice", v.ID)
		}
		seen[v.ID] = true
		if _, err := time.Parse(time.RFC3339, v.CreatedAt); err != nil {
			return nil, fmt.Errorf("version %s: created_at is not an RFC 3339 time", v.ID)
		}
		mat, err := base64.StdEncoding.DecodeString(v.Material)
		n := len(mat)
		clear(mat)
		if err != nil || n != keySize {
			return nil, fmt.Errorf("version %s: material is not base64 of %d bytes", v.ID, keySize)
		}
	}
	return &kf, nil
}

// CreateKeyFile writes a new key file at path with a random key id and one
// version of fresh random key material: mode 0600, missing parent directories
// created with mode 0700, written atomically. It fails (matching fs.ErrExist)
// if the file exists.
func CreateKeyFile(path string) error {
	fileMu.Lock()
	defer fileMu.Unlock()
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	kf := &keyFile{
		Format:   Format,
		KeyID:    hex.EncodeToString(id),
		Versions: []keyVersion{newVersion("1")},
	}
	if err := writeKeyFile(path, kf, true); err != nil {
		return err
	}
	return nil
}

// RotateKeyFile adds a new version of fresh key material to the key file at
// path and returns its id. The new version wraps from now on; every version
// still unwraps.
func RotateKeyFile(path string) (version string, err error) {
	fileMu.Lock()
	defer fileMu.Unlock()
	kf, err := readKeyFile(path)
	if err != nil {
		return "", withFileOp(err, "RotateKeyFile")
	}
	if len(kf.Versions) >= maxVersions {
		return "", fileError(kms.CodeInvalidArgument, "key file %s already has %d versions", path, maxVersions)
	}
	next := 0
	for _, v := range kf.Versions {
		if n, _ := strconv.Atoi(v.ID); n > next {
			next = n
		}
	}
	v := newVersion(strconv.Itoa(next + 1))
	kf.Versions = append(kf.Versions, v)
	if err := writeKeyFile(path, kf, false); err != nil {
		return "", err
	}
	return v.ID, nil
}

// SetDisabled marks the key file at path disabled (every call with the key
// then fails with kms.CodeKeyDisabled) or enabled again. Tests and `keyward
// dev` use it to simulate a customer disabling a key.
func SetDisabled(path string, disabled bool) error {
	fileMu.Lock()
	defer fileMu.Unlock()
	kf, err := readKeyFile(path)
	if err != nil {
		return withFileOp(err, "SetDisabled")
	}
	kf.Disabled = disabled
	return writeKeyFile(path, kf, false)
}

func newVersion(id string) keyVersion {
	mat := make([]byte, keySize)
	_, _ = rand.Read(mat)
	defer clear(mat)
	return keyVersion{
		ID:        id,
		CreatedAt: time.Now().UTC().Format(time.RFC3339),
		Material:  base64.StdEncoding.EncodeToString(mat),
	}
}

func withFileOp(err error, op string) error {
	var ke *kms.Error
	if errors.As(err, &ke) {
		e := *ke
		e.Op = op
		return &e
	}
	return err
}

// writeKeyFile writes kf to path atomically: a 0600 temporary file in the
// same directory, synced, then renamed over path (exclusive: hard-linked to
// path, failing if path exists). Parent directories are created 0700.
func writeKeyFile(path string, kf *keyFile, exclusive bool) (err error) {
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return fmt.Errorf("localkms: encoding key file %s: %w", path, err)
	}
	data = append(data, '\n')
	defer clear(data)

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("localkms: creating directory for key file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("localkms: writing key file %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if err = tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("localkms: writing key file %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("localkms: writing key file %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("localkms: writing key file %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("localkms: writing key file %s: %w", path, err)
	}
	if exclusive {
		err = os.Link(tmpName, path)
		switch {
		case err == nil:
			_ = os.Remove(tmpName)
		case errors.Is(err, fs.ErrExist):
			err = fmt.Errorf("localkms: key file %s already exists: %w", path, fs.ErrExist)
			return err
		default:
			// No hard links on this file system: check, then rename.
			if _, serr := os.Lstat(path); serr == nil {
				err = fmt.Errorf("localkms: key file %s already exists: %w", path, fs.ErrExist)
				return err
			}
			if err = os.Rename(tmpName, path); err != nil {
				return fmt.Errorf("localkms: writing key file %s: %w", path, err)
			}
		}
	} else if err = os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("localkms: writing key file %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename durable where the platform allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
