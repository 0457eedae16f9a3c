package encryptor_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/services/encryptor/encryptor"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// encryptorBinary builds the real encryptor command once per test run.
func encryptorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyward-encryptor-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "encryptor")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/keyward/keyward/services/encryptor").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the encryptor: %v", buildErr)
	}
	return binPath
}

// TestCrashAtEveryCommitPoint kills a real encryptor process (SIGKILL) at
// each point of the commit protocol while it handles one asset, restarts a
// worker on the same ledger file, and checks the asset ends with exactly one
// ciphertext, one AssetEncrypted, no staging copy, and reads back intact.
func TestCrashAtEveryCommitPoint(t *testing.T) {
	bin := encryptorBinary(t)
	for _, tc := range []struct {
		point string
		size  int
	}{
		{encryptor.FailpointStored, 1 << 10}, {encryptor.FailpointStored, 400 << 10},
		{encryptor.FailpointPublished, 1 << 10}, {encryptor.FailpointPublished, 400 << 10},
		{encryptor.FailpointRecorded, 1 << 10}, {encryptor.FailpointRecorded, 400 << 10},
		{encryptor.FailpointCleaned, 400 << 10},
	} {
		point := tc.point
		t.Run(fmt.Sprintf("%s/%dKiB", point, tc.size>>10), func(t *testing.T) {
			s := newStackNoWorker(t, func(o *encryptor.Options) { o.AckWait = 2 * time.Second })
			s.enroll("acme")
			data := pattern(tc.size, 42) // 1 KiB inline (stored with its batch), 400 KiB staged (streamed)

			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(),
				"NATS_URL="+s.env.URL,
				"KEYWARD_DATA_DIR="+s.dir,
				"KEYWARD_PLATFORM_KEY="+s.platform.String(),
				"KEYWARD_FALLBACK_KEY="+s.fallback.String(),
				"KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS=true",
				// The test's server runs without authentication.
				"KEYWARD_AUTHORIZE_CALLERS=false",
				"KEYWARD_HTTP_ADDR=",
				"KEYWARD_ACK_WAIT=2s",
				"KEYWARD_FAILPOINT="+point,
			)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pending, err := s.producer.Put(ctx, producer.Asset{TenantID: "acme", AssetID: "rec-1", Service: "cloud_recording", OwnerUserID: "u"}, bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				if err == nil || !strings.Contains(err.Error(), "killed") {
					t.Fatalf("encryptor exited with %v, want killed at %s\n%s", err, point, stderr.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("encryptor never reached failpoint %s\n%s", point, stderr.String())
			}

			// The killed process stored its ciphertext at every point.
			before, err := s.vault.Info(ctx, "acme/rec-1")
			if err != nil {
				t.Fatalf("no ciphertext after the crash at %s: %v", point, err)
			}

			s.start() // a new worker on the same ledger file
			out, err := pending.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if out.Encrypted == nil {
				t.Fatalf("outcome after restart: %+v", out.Rejected)
			}

			// Exactly one AssetEncrypted in the log of record.
			n := 0
			for _, m := range s.streamMsgs(events.StreamAssets, events.SubjectAssetEncrypted("acme")) {
				if e, err := events.DecodeAssetEncrypted(m.Data); err == nil && e.AssetID == "rec-1" {
					n++
					if e.CiphertextSHA256 != out.Encrypted.CiphertextSHA256 {
						t.Errorf("published event describes another ciphertext than the one stored")
					}
				}
			}
			if n != 1 {
				t.Fatalf("%d AssetEncrypted events for rec-1, want 1", n)
			}
			// Exactly one ciphertext: the vault's chunk messages are those of
			// one object.
			info, err := s.vault.Info(ctx, "acme/rec-1")
			if err != nil {
				t.Fatal(err)
			}
			if info.NUID != before.NUID || info.Digest != before.Digest {
				t.Fatalf("the restarted worker wrote a second ciphertext instead of keeping the stored one")
			}
			chunks := s.streamMsgs("OBJ_"+events.BucketVault, "$O."+events.BucketVault+".C.>")
			if len(chunks) != int(info.Chunks) {
				t.Fatalf("vault holds %d chunk messages, the object has %d: a second ciphertext was written", len(chunks), info.Chunks)
			}
			if tc.size > 256<<10 && s.stagingExists("acme/rec-1") {
				t.Error("staging copy survived")
			}
			got, err := s.get("acme", "rec-1")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: %d bytes, %v", len(got), err)
			}
			if d := s.dlq(); len(d) != 0 {
				t.Fatalf("dead letters: %+v", d[0])
			}
		})
	}
}
