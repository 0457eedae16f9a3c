package reencryptor_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// reencryptorBinary builds the real re-encryptor command once per run.
func reencryptorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyward-reencryptor-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "re-encryptor")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/keyward/keyward/services/re-encryptor").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the re-encryptor: %v", buildErr)
	}
	return binPath
}

// crashAssets is the size of the kill -9 test's job: 5,000 assets, as the
// issue asks (1,000 under the race detector, whose slowdown would make the
// in-process encryptor the test's bottleneck), more with KEYWARD_LONG_TESTS.
func crashAssets() int {
	switch {
	case os.Getenv("KEYWARD_LONG_TESTS") != "":
		return 20000
	case raceEnabled:
		return 1000
	}
	return 5000
}

// The real re-encryptor process is killed (SIGKILL) at both failpoints of a
// batch — objects replaced but not recorded, recorded but not checkpointed —
// and then at random points of a heal of thousands of assets, restarted on
// the same ledger file each time. It finishes with every asset under the
// customer key, exactly one AssetReencrypted per asset, and every asset
// reading back intact.
func TestKillNineResumes(t *testing.T) {
	bin := reencryptorBinary(t)
	s := newStack(t)
	key := s.enroll("big")
	n := crashAssets()
	data := func(i int) []byte { return pattern(64+i%200, i) }
	s.setStatus("big", key, events.KeyStatusUnavailable)
	start := time.Now()
	s.putMany("big", "a", n, data)
	t.Logf("%d fallback assets stored in %v", n, time.Since(start).Round(time.Millisecond))
	s.setStatus("big", key, events.KeyStatusAvailable)

	dataDir := t.TempDir()
	run := func(failpoint string) *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(),
			"NATS_URL="+s.env.URL,
			"KEYWARD_DATA_DIR="+dataDir,
			"KEYWARD_PLATFORM_KEY="+s.platform.String(),
			"KEYWARD_FALLBACK_KEY="+s.fallback.String(),
			"KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS=true",
			"KEYWARD_HTTP_ADDR=",
			"KEYWARD_RESCAN_INTERVAL=200ms",
			"KEYWARD_BATCH_SIZE=50",
			"KEYWARD_INSTANCE_ID=re-encryptor-0", // a restarted pod keeps its name and resumes its own lease
			"KEYWARD_FAILPOINT="+failpoint,
		)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			if t.Failed() {
				t.Logf("re-encryptor stderr (last 2 KiB): %s", tail(stderr.String(), 2048))
			}
		})
		return cmd
	}
	done := func() int64 {
		j, err := s.jobs.Get(context.Background(), "big", events.PurposeHeal)
		if err != nil || j == nil {
			return 0
		}
		return j.Done
	}

	// The failpoints: the process kills itself at its first batch.
	for _, fp := range []string{reencryptor.FailpointMoved, reencryptor.FailpointRecorded} {
		cmd := run(fp)
		err := cmd.Wait()
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("re-encryptor exited with %v, want killed at %s", err, fp)
		}
	}
	// Random points: kill when the job has done a random share more.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	for kills < 4 {
		cmd := run("")
		from := done()
		at := from + 1 + rng.Int64N(int64(n)/6)
		deadline := time.Now().Add(2 * time.Minute)
		for done() < at && time.Now().Before(deadline) {
			time.Sleep(time.Duration(1+rng.IntN(20)) * time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		kills++
		t.Logf("kill %d at done=%d", kills, done())
	}
	// The last run finishes.
	cmd := run("")
	job := s.waitJob("big", events.PurposeHeal, 5*time.Minute, completedAndFinal)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	t.Logf("job %s: done %d, skipped %d, passes %d", job.ID, job.Done, job.Skipped, job.Pass)
	if job.Done != int64(n) || job.Failed != 0 {
		t.Errorf("job reports done %d failed %d, want %d and 0", job.Done, job.Failed, n)
	}

	moves := map[string]int{}
	for _, e := range s.reencrypted("big") {
		moves[e.AssetID]++
	}
	for i := range n {
		if id := assetID("a", i); moves[id] != 1 {
			t.Fatalf("%s has %d AssetReencrypted events, want exactly 1", id, moves[id])
		}
	}
	if len(moves) != n {
		t.Fatalf("%d assets moved, want %d", len(moves), n)
	}
	ctx := context.Background()
	s.eventually("the encryptor's ledger to record every move", func() bool {
		c, err := s.encLedger.CountByMode(ctx, "big")
		return err == nil && c[events.ModeCustomer] == n && c[events.ModeFallback] == 0
	})
	// The process's own ledger agrees.
	l, err := ledger.Open(filepath.Join(dataDir, "reencryptor-ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.CountByMode(ctx, "big")
	l.Close()
	if err != nil || c[events.ModeCustomer] != n || c[events.ModeFallback] != 0 {
		t.Fatalf("re-encryptor ledger: %v, %v", c, err)
	}
	// Every stored header names the customer key; a sample reads back.
	for i := range n {
		id := assetID("a", i)
		if p := s.prefix("big", id); p.Header.KeyURI != key.String() {
			t.Fatalf("%s header names %s", id, p.Header.KeyURI)
		}
	}
	for _, i := range []int{0, 1, n / 3, n / 2, n - 1} {
		id := assetID("a", i)
		got, err := s.get("big", id)
		if err != nil || !bytes.Equal(got, data(i)) {
			t.Fatalf("%s reads %d bytes, %v", id, len(got), err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
