package ledger

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkApply shows group commit: one transaction and one fsync per
// batch, so ns/record falls as the batch grows.
func BenchmarkApply(b *testing.B) {
	for _, size := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			s := newTestStore(b)
			recs := make([]Record, size)
			n := 0
			for b.Loop() {
				for i := range recs {
					recs[i] = enc("tenant-1", fmt.Sprintf("asset-%09d", n), ModeCustomer, "awskms://arn:aws:kms:eu-west-2:111122223333:key/k")
					recs[i].WrappedSeed = make([]byte, 184)
					n++
				}
				if err := s.Apply(ctx, Batch{Records: recs, Cursors: map[string]uint64{"KW_ASSETS": uint64(n)}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
		})
	}
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s := newTestStore(b)
	const n = 10000
	recs := make([]Record, 0, 500)
	for i := range n {
		r := enc("tenant-1", fmt.Sprintf("asset-%06d", i), ModeCustomer, "awskms://k")
		r.WrappedSeed = make([]byte, 184)
		recs = append(recs, r)
		if len(recs) == cap(recs) {
			mustPut(b, s, recs...)
			recs = recs[:0]
		}
	}
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("asset-%06d", (i*7919)%n)
	}
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, "tenant-1", ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
