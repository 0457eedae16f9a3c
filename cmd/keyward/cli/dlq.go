package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/events"
)

func (a *App) dlqCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "Inspect and redrive dead letters (stream KW_DLQ)"}
	cmd.AddCommand(a.dlqListCmd(), a.dlqRedriveCmd())
	return cmd
}

// readDeadLetters returns the dead letters of reason ("" for all), oldest first.
func readDeadLetters(ctx context.Context, js jetstream.JetStream, reason string, limit int) ([]*events.DeadLetter, error) {
	filter := events.SubjectDLQAll
	if reason != "" {
		filter = events.SubjectDLQ(events.Reason(reason))
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamDLQ, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	var out []*events.DeadLetter
	for limit <= 0 || len(out) < limit {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			d, err := events.ParseDeadLetter(m.Subject(), m.Headers(), m.Data(), md.Sequence.Stream)
			if err != nil {
				continue
			}
			out = append(out, d)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

func (a *App) dlqListCmd() *cobra.Command {
	var reason string
	var limit int
	cmd := &cobra.Command{
		Use:   "list [--reason R]",
		Short: "List dead letters with their reason, origin and detail",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, _, js, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			letters, err := readDeadLetters(ctx, js, reason, limit)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(letters)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tREASON\tSUBJECT\tWORKER\tDELIVERIES\tFAILED AT\tDETAIL")
			for _, d := range letters {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.DLQSeq, d.Reason, d.Subject, d.Worker, d.Deliveries, d.FailedAt.Format(time.RFC3339), d.Detail)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "only this reason (e.g. invalid_event)")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many (0: all)")
	return cmd
}

func (a *App) dlqRedriveCmd() *cobra.Command {
	var reason string
	var all, keep bool
	cmd := &cobra.Command{
		Use:   "redrive (SEQ... | --all [--reason R])",
		Short: "Put dead letters back on their original subject, then remove them from KW_DLQ",
		Long: `redrive republishes each dead letter unchanged (original subject, headers and
bytes) with a new message id, so the worker sees it again, and then deletes it
from KW_DLQ (unless --keep). Fix the cause first: a dead letter that fails the
same way comes back to KW_DLQ.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usagef("name dead letters by sequence, or pass --all")
			}
			ctx, _, js, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			stream, err := js.Stream(ctx, events.StreamDLQ)
			if err != nil {
				return err
			}
			var letters []*events.DeadLetter
			if all {
				if letters, err = readDeadLetters(ctx, js, reason, 0); err != nil {
					return err
				}
			}
			for _, arg := range args {
				seq, err := strconv.ParseUint(arg, 10, 64)
				if err != nil {
					return usagef("%q is not a dead-letter sequence number (see keyward dlq list)", arg)
				}
				m, err := stream.GetMsg(ctx, seq)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					return fmt.Errorf("no dead letter %d in %s", seq, events.StreamDLQ)
				}
				if err != nil {
					return err
				}
				d, err := events.ParseDeadLetter(m.Subject, m.Header, m.Data, m.Sequence)
				if err != nil {
					return err
				}
				letters = append(letters, d)
			}
			for _, d := range letters {
				if len(d.Redacted) > 0 {
					fmt.Fprintf(a.Stderr, "skipping %d: %v was removed when it was dead-lettered; the producer must send it again\n", d.DLQSeq, d.Redacted)
					continue
				}
				if _, err := js.PublishMsg(ctx, d.RedriveMsg()); err != nil {
					return fmt.Errorf("redriving %d to %s: %w", d.DLQSeq, d.Subject, err)
				}
				if !keep {
					if err := stream.DeleteMsg(ctx, d.DLQSeq); err != nil {
						return fmt.Errorf("redrove %d but could not delete it from %s: %w", d.DLQSeq, events.StreamDLQ, err)
					}
				}
				fmt.Fprintf(a.Stdout, "redrove %d (%s) to %s\n", d.DLQSeq, d.Reason, d.Subject)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter (of --reason, if given)")
	cmd.Flags().StringVar(&reason, "reason", "", "with --all: only this reason")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the dead letters in KW_DLQ after redriving")
	return cmd
}
