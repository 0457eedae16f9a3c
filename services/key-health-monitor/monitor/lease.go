package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keyhealth"
)

// Keys of the lease bucket (events.BucketKeyHealthLeases):
//
//	partition.<n>      a lease: which instance probes the tenants of partition n
//	instance.<id>      a heartbeat: instance id is alive
//
// Every entry expires after the bucket's TTL unless rewritten, which is
// what makes a dead instance's leases free. Leases are taken with Create
// (fails if the key exists) and renewed with Update at the last revision
// (fails if anyone else wrote it): compare-and-set, nothing more.
const (
	leasePrefix     = "partition."
	heartbeatPrefix = "instance."
)

func leaseKey(p int) string                { return leasePrefix + strconv.Itoa(p) }
func heartbeatKey(id string) string        { return heartbeatPrefix + id }
func (w *Worker) fence() int64             { return int64(w.leaseTTL) * 3 / 4 }
func (w *Worker) leaseTick() time.Duration { return w.leaseTTL / 4 }

// leaseValue is the value of a lease or a heartbeat.
type leaseValue struct {
	Instance   string    `json:"instance"`
	Partitions int       `json:"partitions"`
	At         time.Time `json:"at"`
}

func (w *Worker) leaseValue() []byte {
	b, _ := json.Marshal(leaseValue{Instance: w.o.InstanceID, Partitions: w.partitions, At: time.Now().UTC()})
	return b
}

// snapshot reads the current entries of the lease bucket.
func (w *Worker) snapshot(ctx context.Context) (map[string]leaseEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, w.leaseTick())
	defer cancel()
	watcher, err := w.leaseKV.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer watcher.Stop()
	out := map[string]leaseEntry{}
	for {
		select {
		case e, ok := <-watcher.Updates():
			if !ok {
				return nil, errors.New("lease bucket watch ended")
			}
			if e == nil {
				return out, nil
			}
			var v leaseValue
			if json.Unmarshal(e.Value(), &v) == nil {
				out[e.Key()] = leaseEntry{leaseValue: v, rev: e.Revision()}
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

type leaseEntry struct {
	leaseValue
	rev uint64
}

// agreePartitions returns the partition count of the running instances
// (from their heartbeats), or Options.Partitions when none runs.
func (w *Worker) agreePartitions(ctx context.Context) (int, error) {
	snap, err := w.snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("monitor: reading %s: %w", events.BucketKeyHealthLeases, err)
	}
	for k, e := range snap {
		if strings.HasPrefix(k, heartbeatPrefix) && e.Partitions > 0 {
			if e.Partitions != w.o.Partitions {
				w.log.Warn("using the partition count of the running instances", "partitions", e.Partitions, "configured", w.o.Partitions, "instance", e.Instance)
			}
			return e.Partitions, nil
		}
	}
	return w.o.Partitions, nil
}

// leaseLoop holds this instance's share of the partitions until ctx ends:
// every quarter of the TTL it writes its heartbeat, renews its leases,
// drops those it could not renew in time, and takes free partitions or
// gives back extra ones so each of the live instances holds at most
// ceil(P / live).
func (w *Worker) leaseLoop(ctx context.Context) {
	w.leaseRound(ctx)
	w.leasesOnce.Do(func() { close(w.leasesReady) })
	t := time.NewTicker(w.leaseTick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.leaseRound(ctx)
		}
	}
}

func (w *Worker) leaseRound(ctx context.Context) {
	if _, err := w.leaseKV.Put(ctx, heartbeatKey(w.o.InstanceID), w.leaseValue()); err != nil && ctx.Err() == nil {
		w.log.Warn("writing the heartbeat failed", "error", err)
	}
	snap, snapErr := w.snapshot(ctx)
	if snapErr != nil && ctx.Err() == nil {
		w.log.Warn("reading the lease bucket failed", "error", snapErr)
	}

	// Renew what is held.
	w.mu.Lock()
	held := make([]*partition, 0, len(w.owned))
	for _, part := range w.owned {
		held = append(held, part)
	}
	w.mu.Unlock()
	for _, part := range held {
		start := w.mono()
		rev, err := w.leaseKV.Update(ctx, leaseKey(part.n), w.leaseValue(), part.rev)
		switch {
		case err == nil:
			part.rev = rev
			part.validUntil.Store(start + w.fence())
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound):
			w.lose(part, "the lease was taken or expired")
		default:
			if ctx.Err() == nil {
				w.log.Warn("renewing a partition lease failed", "partition", part.n, "error", err)
			}
		}
	}
	// A lease not renewed for three quarters of the TTL may expire before
	// the next renewal reaches NATS: stop probing before anyone else can
	// start.
	now := w.mono()
	for _, part := range held {
		if part.active.Load() && !part.owns(now) {
			w.lose(part, "the lease could not be renewed in time")
		}
	}
	if snapErr != nil || ctx.Err() != nil {
		return
	}

	live := 0
	for k, e := range snap {
		if strings.HasPrefix(k, heartbeatPrefix) {
			live++
			if e.Partitions != w.partitions && e.Partitions > 0 {
				w.log.Warn("an instance uses another partition count: keys may be probed twice", "instance", e.Instance, "partitions", e.Partitions, "ours", w.partitions)
			}
		}
	}
	if _, ok := snap[heartbeatKey(w.o.InstanceID)]; !ok {
		live++
	}
	share := keyhealth.Share(w.partitions, live)

	w.mu.Lock()
	w.live = live
	owned := make([]int, 0, len(w.owned))
	for p := range w.owned {
		owned = append(owned, p)
	}
	w.mu.Unlock()
	sort.Ints(owned)

	if extra := len(owned) - share; extra > 0 {
		// Give back the extra partitions; an instance under its share
		// takes them at its next round.
		for _, p := range owned[len(owned)-extra:] {
			w.release(ctx, p)
		}
		return
	}
	free := []int{}
	for p := range w.partitions {
		e, taken := snap[leaseKey(p)]
		if !taken || e.Instance == w.o.InstanceID {
			free = append(free, p)
		}
	}
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	n := len(owned)
	for _, p := range free {
		if n >= share {
			break
		}
		w.mu.Lock()
		_, mine := w.owned[p]
		w.mu.Unlock()
		if mine {
			continue
		}
		start := w.mono()
		var rev uint64
		var err error
		if e, ok := snap[leaseKey(p)]; ok {
			// Ours from before (lost after a failed renewal): adopt it
			// if nobody wrote it since.
			rev, err = w.leaseKV.Update(ctx, leaseKey(p), w.leaseValue(), e.rev)
		} else {
			rev, err = w.leaseKV.Create(ctx, leaseKey(p), w.leaseValue())
		}
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && ctx.Err() == nil {
				w.log.Warn("taking a partition lease failed", "partition", p, "error", err)
			}
			continue
		}
		w.acquire(ctx, p, rev, start)
		n++
	}
}

// acquire starts probing the tenants of partition p.
func (w *Worker) acquire(ctx context.Context, p int, rev uint64, start int64) {
	part := &partition{n: p, rev: rev}
	part.validUntil.Store(start + w.fence())
	part.active.Store(true)
	w.mu.Lock()
	w.owned[p] = part
	keys := 0
	for tid := range w.byPart[p] {
		for _, uri := range enrolledKeys(w.tenants[tid]) {
			w.addKey(part, tid, uri)
			keys++
		}
	}
	w.mu.Unlock()
	w.log.Info("partition acquired", "partition", p, "keys", keys)
	go w.seedPartition(context.WithoutCancel(ctx), part)
}

// seedPartition reads the KW_KEY_STATUS records of a newly held
// partition's keys, so keys that are not available are probed at the
// unhealthy interval from the start, and deletes the records of keys no
// tenant of the partition enrolls any more (removed while no instance
// held the partition).
func (w *Worker) seedPartition(ctx context.Context, part *partition) {
	w.mu.Lock()
	var keys []*keyState
	for _, ks := range w.keys {
		if ks.part == part {
			keys = append(keys, ks)
		}
	}
	w.mu.Unlock()
	for _, ks := range keys {
		if !part.active.Load() {
			return
		}
		ks.mu.Lock()
		if !ks.seeded && !ks.gone.Load() {
			if err := w.seed(ctx, ks); err != nil {
				w.log.Warn("reading a key's status", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", err)
			}
		}
		st, _, _ := ks.tracker.Status()
		ks.mu.Unlock()
		if st != events.KeyStatusUnknown && st != events.KeyStatusAvailable {
			w.mu.Lock()
			w.queue.Advance(ks.id, time.Now().Add(w.schedule.First(st, events.KeyStatusUnknown, rand.Float64())))
			w.mu.Unlock()
			w.signal()
		}
	}
	lister, err := w.statusKV.ListKeys(ctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) {
			w.log.Warn("listing key statuses", "error", err)
		}
		return
	}
	var orphans []string
	for k := range lister.Keys() {
		tid, _, ok := strings.Cut(k, ".")
		if !ok || keyhealth.Partition(tid, w.partitions) != part.n {
			continue
		}
		w.mu.Lock()
		_, probed := w.keys[k]
		_, known := w.tenants[tid]
		enrolled := known && enrolledKeys(w.tenants[tid])[k] != ""
		w.mu.Unlock()
		if !probed && !enrolled {
			orphans = append(orphans, k)
		}
	}
	for _, k := range orphans {
		if !part.owns(w.mono()) {
			return
		}
		if err := w.statusKV.Delete(ctx, k); err != nil {
			w.log.Warn("deleting the status of a key no longer enrolled", "key", k, "error", err)
			continue
		}
		w.log.Info("deleted the status of a key no longer enrolled", "key", k)
	}
}

// drop stops probing a partition's keys. Called with w.mu held.
func (w *Worker) drop(part *partition) {
	part.active.Store(false)
	delete(w.owned, part.n)
	for _, ks := range w.keys {
		if ks.part == part {
			w.dropKey(ks)
		}
	}
}

// lose drops a partition whose lease this instance no longer holds.
func (w *Worker) lose(part *partition, why string) {
	w.mu.Lock()
	if w.owned[part.n] == part {
		w.drop(part)
	}
	w.mu.Unlock()
	w.log.Warn("partition lost", "partition", part.n, "why", why)
}

// release gives a partition back: no new probes, the ones in progress
// finish and publish, then the lease is deleted (at its revision, so a
// lease someone else took meanwhile is left alone).
func (w *Worker) release(ctx context.Context, p int) {
	w.mu.Lock()
	part := w.owned[p]
	if part != nil {
		w.drop(part)
	}
	w.mu.Unlock()
	if part == nil {
		return
	}
	part.busy.Wait()
	if err := w.leaseKV.Delete(ctx, leaseKey(p), jetstream.LastRevision(part.rev)); err != nil {
		w.log.Warn("releasing a partition lease failed; it expires with its TTL", "partition", p, "error", err)
		return
	}
	w.log.Info("partition released", "partition", p)
}

// releaseAll releases every partition and the heartbeat (at shutdown).
func (w *Worker) releaseAll(ctx context.Context) {
	for _, p := range w.Partitions() {
		w.release(ctx, p)
	}
	if err := w.leaseKV.Delete(ctx, heartbeatKey(w.o.InstanceID)); err != nil {
		w.log.Warn("deleting the heartbeat failed; it expires with its TTL", "error", err)
	}
}
