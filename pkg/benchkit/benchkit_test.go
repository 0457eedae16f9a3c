package benchkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/benchkit"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

// The baselines measure something: positive rates, and the bucket they use
// is gone afterwards.
func TestBaselines(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	rate, err := benchkit.RawObjectStoreMove(ctx, env.JS, 20, 4096, 2)
	if err != nil || rate <= 0 {
		t.Fatalf("RawObjectStoreMove = %v, %v", rate, err)
	}
	for name := range env.JS.ObjectStoreNames(ctx).Name() {
		if len(name) > 10 && name[:10] == "BENCH_OBJ_" {
			t.Errorf("bucket %s left behind", name)
		}
	}
	if r := benchkit.RawAESGCMMove(40000, 10*time.Millisecond); r <= 0 {
		t.Fatalf("RawAESGCMMove = %v", r)
	}
	if r := benchkit.RawAESGCMMove(0, time.Millisecond); r <= 0 {
		t.Fatalf("RawAESGCMMove(0) = %v", r)
	}
}
