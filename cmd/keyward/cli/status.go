package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/events"
)

// Status is what `keyward status` reports.
type Status struct {
	Streams      []StreamStatus    `json:"streams"`
	Consumers    []ConsumerStatus  `json:"consumers"`
	DeadLetters  map[string]uint64 `json:"dead_letters"`
	ObjectStores []BucketStatus    `json:"object_stores"`
	KeyValue     []BucketStatus    `json:"key_value"`
	Keys         *KeyHealth        `json:"keys,omitempty"`
}

// StreamStatus summarises one stream.
type StreamStatus struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Replicas int    `json:"replicas"`
	Missing  bool   `json:"missing,omitempty"`
}

// ConsumerStatus summarises one durable consumer.
type ConsumerStatus struct {
	Stream      string `json:"stream"`
	Name        string `json:"name"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
	Waiting     int    `json:"waiting"`
}

// BucketStatus summarises an Object Store or KV bucket.
type BucketStatus struct {
	Name    string `json:"name"`
	Entries uint64 `json:"entries"`
	Bytes   uint64 `json:"bytes"`
}

func (a *App) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Streams, consumers and their backlogs, dead letters by reason, key health and KMS breakers, buckets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, _, js, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			st, err := CollectStatus(ctx, js)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(st)
			}
			a.printStatus(st)
			return nil
		},
	}
}

// CollectStatus gathers the status of a Keyward deployment.
func CollectStatus(ctx context.Context, js jetstream.JetStream) (*Status, error) {
	st := &Status{DeadLetters: map[string]uint64{}}
	for _, cfg := range events.StreamConfigs(events.ProvisionOptions{}) {
		s, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st.Streams = append(st.Streams, StreamStatus{Name: cfg.Name, Missing: true})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		var opts []jetstream.StreamInfoOpt
		if cfg.Name == events.StreamDLQ {
			opts = append(opts, jetstream.WithSubjectFilter(events.SubjectDLQAll))
		}
		info, err := s.Info(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		st.Streams = append(st.Streams, StreamStatus{
			Name: cfg.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Replicas: info.Config.Replicas,
		})
		if cfg.Name == events.StreamDLQ {
			for subj, n := range info.State.Subjects {
				st.DeadLetters[strings.TrimPrefix(subj, "keyward.dlq.")] = n
			}
		}
		names := s.ConsumerNames(ctx)
		for name := range names.Name() {
			c, err := s.Consumer(ctx, name)
			if err != nil {
				continue
			}
			ci, err := c.Info(ctx)
			if err != nil || ci.Config.Durable == "" {
				continue // ephemeral consumers (projections, readers) are not backlogs
			}
			st.Consumers = append(st.Consumers, ConsumerStatus{
				Stream: cfg.Name, Name: name, Pending: ci.NumPending, AckPending: ci.NumAckPending,
				Redelivered: ci.NumRedelivered, Waiting: ci.NumWaiting,
			})
		}
	}
	for _, cfg := range events.ObjectStoreConfigs(events.ProvisionOptions{}) {
		obs, err := js.ObjectStore(ctx, cfg.Bucket)
		if err != nil {
			continue
		}
		s, err := obs.Status(ctx)
		if err != nil {
			continue
		}
		bs := BucketStatus{Name: cfg.Bucket, Bytes: s.Size()}
		if cfg.Bucket == events.BucketStaging {
			// Staging holds a backlog only: list it, skipping deleted markers.
			objs, err := obs.List(ctx)
			if err == nil || errors.Is(err, jetstream.ErrNoObjectsFound) {
				bs.Entries = uint64(len(objs))
			}
		} else if stream, err := js.Stream(ctx, "OBJ_"+cfg.Bucket); err == nil {
			// One metadata subject per object; the vault is never listed whole.
			if info, err := stream.Info(ctx, jetstream.WithSubjectFilter("$O."+cfg.Bucket+".M.>")); err == nil {
				bs.Entries = uint64(len(info.State.Subjects))
			}
		}
		st.ObjectStores = append(st.ObjectStores, bs)
	}
	for _, cfg := range events.KeyValueConfigs(events.ProvisionOptions{}) {
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		if err != nil {
			continue
		}
		s, err := kv.Status(ctx)
		if err != nil {
			continue
		}
		st.KeyValue = append(st.KeyValue, BucketStatus{Name: cfg.Bucket, Entries: s.Values(), Bytes: s.Bytes()})
	}
	if kh, err := CollectKeyHealth(ctx, js); err == nil {
		st.Keys = kh
	}
	return st, nil
}

func (a *App) printStatus(st *Status) {
	tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tLAST SEQ\tREPLICAS")
	for _, s := range st.Streams {
		if s.Missing {
			fmt.Fprintf(tw, "%s\tmissing (run a worker or keyward dev to provision)\t\t\t\n", s.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", s.Name, s.Messages, humanBytes(s.Bytes), s.LastSeq, s.Replicas)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CONSUMER\tSTREAM\tPENDING\tACK PENDING\tREDELIVERED\tWAITING")
	for _, c := range st.Consumers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", c.Name, c.Stream, c.Pending, c.AckPending, c.Redelivered, c.Waiting)
	}
	if len(st.Consumers) == 0 {
		fmt.Fprintln(tw, "none (no worker has started yet)\t\t\t\t\t")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DEAD LETTERS\tMESSAGES\t\t\t\t")
	reasons := make([]string, 0, len(st.DeadLetters))
	var total uint64
	for r, n := range st.DeadLetters {
		reasons = append(reasons, r)
		total += n
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(tw, "%s\t%d\t\t\t\t\n", r, st.DeadLetters[r])
	}
	fmt.Fprintf(tw, "total\t%d\t\t\t\t\n", total)
	fmt.Fprintln(tw)
	a.printKeyHealth(tw, st.Keys)
	fmt.Fprintln(tw, "BUCKET\tENTRIES\tBYTES\t\t\t")
	for _, b := range append(append([]BucketStatus(nil), st.ObjectStores...), st.KeyValue...) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t\t\t\n", b.Name, b.Entries, humanBytes(b.Bytes))
	}
	tw.Flush()
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
