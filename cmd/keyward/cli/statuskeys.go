package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
)

// MaxKeysListed bounds the keys `keyward status` lists one by one (those not
// available); the counts cover all.
const MaxKeysListed = 20

// KeyHealth is the key part of `keyward status`: every enrolled key's status
// from KW_KEY_STATUS, and the KMS circuit breakers that are not closed
// according to their last BreakerStateChanged in KW_KEYS.
type KeyHealth struct {
	ByStatus map[string]int     `json:"by_status"`
	Away     []keystatus.Record `json:"away,omitempty"` // keys not available or degraded, at most MaxKeysListed
	AwayMore int                `json:"away_more,omitempty"`
	Breakers []BreakerStatus    `json:"breakers,omitempty"`
}

// BreakerStatus is one worker's breaker for one endpoint, as last reported.
type BreakerStatus struct {
	Worker   string    `json:"worker"`
	Provider string    `json:"provider"`
	Endpoint string    `json:"endpoint"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
}

// CollectKeyHealth reads KW_KEY_STATUS and the breaker events of KW_KEYS.
func CollectKeyHealth(ctx context.Context, js jetstream.JetStream) (*KeyHealth, error) {
	kh := &KeyHealth{ByStatus: map[string]int{}}
	kv, err := js.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		return nil, fmt.Errorf("key status bucket: %w", err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, err
	}
	if lister != nil {
		for k := range lister.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil {
				continue
			}
			rec, err := keystatus.Parse(e.Value())
			if err != nil {
				continue
			}
			kh.ByStatus[string(rec.Status)]++
			if rec.Status == events.KeyStatusUnavailable || rec.Status == events.KeyStatusRevoked {
				if len(kh.Away) < MaxKeysListed {
					kh.Away = append(kh.Away, rec)
				} else {
					kh.AwayMore++
				}
			}
		}
	}
	sort.Slice(kh.Away, func(i, j int) bool { return kh.Away[i].Since.Before(kh.Away[j].Since) })

	stream, err := js.Stream(ctx, events.StreamKeys)
	if err != nil {
		return kh, nil // not provisioned yet: no breaker has reported
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(events.SubjectBreakerAll))
	if err != nil || len(info.State.Subjects) == 0 {
		return kh, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectBreakerAll}})
	if err != nil {
		return nil, err
	}
	last := map[string]BreakerStatus{}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			e, err := events.DecodeBreakerStateChanged(m.Data())
			if err != nil {
				continue
			}
			last[e.Worker+" "+e.Endpoint] = BreakerStatus{Worker: e.Worker, Provider: e.Provider, Endpoint: e.Endpoint, State: e.To, Since: e.At}
		}
		if n == 0 {
			break
		}
	}
	for _, b := range last {
		if b.State != "closed" {
			kh.Breakers = append(kh.Breakers, b)
		}
	}
	sort.Slice(kh.Breakers, func(i, j int) bool { return kh.Breakers[i].Since.Before(kh.Breakers[j].Since) })
	return kh, nil
}

func (a *App) printKeyHealth(tw *tabwriter.Writer, kh *KeyHealth) {
	if kh == nil {
		return
	}
	fmt.Fprintln(tw, "KEYS\tAVAILABLE\tDEGRADED\tUNAVAILABLE\tREVOKED\t")
	fmt.Fprintf(tw, "all tenants\t%d\t%d\t%d\t%d\t\n", kh.ByStatus["available"], kh.ByStatus["degraded"], kh.ByStatus["unavailable"], kh.ByStatus["revoked"])
	for _, r := range kh.Away {
		fmt.Fprintf(tw, "  %s %s\t%s since %s\t%s\t\t\t\n", r.TenantID, r.KeyURI, r.Status, r.Since.Format(time.RFC3339), r.Reason)
	}
	if kh.AwayMore > 0 {
		fmt.Fprintf(tw, "  … and %d more (keyward tenant key list --tenant T)\t\t\t\t\t\n", kh.AwayMore)
	}
	fmt.Fprintln(tw)
	if len(kh.Breakers) == 0 {
		fmt.Fprintln(tw, "KMS BREAKERS\tall closed\t\t\t\t")
	} else {
		fmt.Fprintln(tw, "KMS BREAKER\tSTATE\tSINCE\tWORKER\t\t")
		for _, b := range kh.Breakers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\n", b.Endpoint, b.State, b.Since.Format(time.RFC3339), b.Worker)
		}
	}
	fmt.Fprintln(tw)
}
