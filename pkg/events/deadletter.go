package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter headers. A dead letter is stored in KW_DLQ as the original
// message bytes with the original headers, plus these headers saying why and
// where it came from, so it can be read with any NATS tool and redriven by
// republishing it unchanged to Kw-Dlq-Subject.
const (
	HeaderDLQReason     = "Kw-Dlq-Reason"
	HeaderDLQDetail     = "Kw-Dlq-Detail"
	HeaderDLQWorker     = "Kw-Dlq-Worker"
	HeaderDLQSubject    = "Kw-Dlq-Subject"
	HeaderDLQStream     = "Kw-Dlq-Stream"
	HeaderDLQConsumer   = "Kw-Dlq-Consumer"
	HeaderDLQStreamSeq  = "Kw-Dlq-Stream-Seq"
	HeaderDLQDeliveries = "Kw-Dlq-Deliveries"
	HeaderDLQTime       = "Kw-Dlq-Time"
	HeaderDLQRedacted   = "Kw-Dlq-Redacted"
	HeaderDLQOrigMsgID  = "Kw-Dlq-Orig-Msg-Id"
)

// DeadLetter is a message no worker could process, with the reason. It is the
// JSON form `keyward dlq` prints; on the wire it is a KW_DLQ message (see
// the HeaderDLQ* constants).
type DeadLetter struct {
	Reason     Reason              `json:"reason"`
	Detail     string              `json:"detail"`
	Worker     string              `json:"worker"`
	Subject    string              `json:"subject"`
	TenantID   string              `json:"tenant_id,omitempty"`
	Stream     string              `json:"stream,omitempty"`
	Consumer   string              `json:"consumer,omitempty"`
	StreamSeq  uint64              `json:"stream_seq,omitempty"`
	Deliveries uint64              `json:"deliveries"`
	Headers    map[string][]string `json:"headers,omitempty"`
	Data       []byte              `json:"data"`
	// Redacted lists fields removed from Data before storing it, e.g.
	// "content.inline": plaintext never rests in the dead-letter stream.
	Redacted []string  `json:"redacted,omitempty"`
	FailedAt time.Time `json:"failed_at"`
	// DLQSeq is the sequence in KW_DLQ, set when read back.
	DLQSeq uint64 `json:"dlq_seq,omitempty"`
}

// NewDeadLetter builds a dead letter from a JetStream message being settled.
// Inline plaintext in an asset event is removed (see Redacted).
func NewDeadLetter(msg jetstream.Msg, worker string, reason Reason, detail string) *DeadLetter {
	d := &DeadLetter{
		Reason:   reason,
		Detail:   clipDetail(detail),
		Worker:   worker,
		Subject:  msg.Subject(),
		Data:     msg.Data(),
		FailedAt: time.Now().UTC(),
	}
	if t, err := TenantFromSubject(d.Subject); err == nil {
		d.TenantID = t
	}
	if h := msg.Headers(); len(h) > 0 {
		d.Headers = make(map[string][]string, len(h))
		for k, v := range h {
			d.Headers[k] = append([]string(nil), v...)
		}
	}
	if md, err := msg.Metadata(); err == nil {
		d.Stream, d.Consumer = md.Stream, md.Consumer
		d.StreamSeq, d.Deliveries = md.Sequence.Stream, md.NumDelivered
	}
	if strings.HasPrefix(d.Subject, prefixAssetCreated) {
		d.Data, d.Redacted = redactInline(d.Data)
	}
	return d
}

// Msg encodes the dead letter as a KW_DLQ message. Its Nats-Msg-Id is
// derived from the original stream position, so dead-lettering the same
// delivery twice stores it once.
func (d *DeadLetter) Msg() *nats.Msg {
	m := nats.NewMsg(SubjectDLQ(d.Reason))
	m.Data = d.Data
	for k, v := range d.Headers {
		if strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "Kw-Dlq-") {
			continue
		}
		m.Header[k] = append([]string(nil), v...)
	}
	if id := firstHeader(d.Headers, HeaderMsgID); id != "" {
		m.Header.Set(HeaderDLQOrigMsgID, id)
	}
	m.Header.Set(HeaderDLQReason, string(d.Reason))
	m.Header.Set(HeaderDLQDetail, d.Detail)
	m.Header.Set(HeaderDLQWorker, d.Worker)
	m.Header.Set(HeaderDLQSubject, d.Subject)
	m.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(d.Deliveries, 10))
	m.Header.Set(HeaderDLQTime, d.FailedAt.Format(time.RFC3339Nano))
	if d.Stream != "" {
		m.Header.Set(HeaderDLQStream, d.Stream)
		m.Header.Set(HeaderDLQConsumer, d.Consumer)
		m.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(d.StreamSeq, 10))
		m.Header.Set(HeaderMsgID, fmt.Sprintf("dlq.%s.%d", d.Stream, d.StreamSeq))
	}
	if len(d.Redacted) > 0 {
		m.Header.Set(HeaderDLQRedacted, strings.Join(d.Redacted, ","))
	}
	return m
}

// ParseDeadLetter reads a KW_DLQ message back.
func ParseDeadLetter(subject string, hdr nats.Header, data []byte, seq uint64) (*DeadLetter, error) {
	reason := hdr.Get(HeaderDLQReason)
	if reason == "" || !strings.HasPrefix(subject, prefixDLQ) {
		return nil, fmt.Errorf("message on %q is not a Keyward dead letter (no %s header)", subject, HeaderDLQReason)
	}
	d := &DeadLetter{
		Reason:  Reason(reason),
		Detail:  hdr.Get(HeaderDLQDetail),
		Worker:  hdr.Get(HeaderDLQWorker),
		Subject: hdr.Get(HeaderDLQSubject),
		Stream:  hdr.Get(HeaderDLQStream),
		Data:    data,
		DLQSeq:  seq,
	}
	if t, err := TenantFromSubject(d.Subject); err == nil {
		d.TenantID = t
	}
	d.Consumer = hdr.Get(HeaderDLQConsumer)
	d.StreamSeq, _ = strconv.ParseUint(hdr.Get(HeaderDLQStreamSeq), 10, 64)
	d.Deliveries, _ = strconv.ParseUint(hdr.Get(HeaderDLQDeliveries), 10, 64)
	d.FailedAt, _ = time.Parse(time.RFC3339Nano, hdr.Get(HeaderDLQTime))
	if r := hdr.Get(HeaderDLQRedacted); r != "" {
		d.Redacted = strings.Split(r, ",")
	}
	d.Headers = map[string][]string{}
	for k, v := range hdr {
		if strings.HasPrefix(k, "Kw-Dlq-") || strings.HasPrefix(k, "Nats-") {
			continue
		}
		d.Headers[k] = v
	}
	if id := hdr.Get(HeaderDLQOrigMsgID); id != "" {
		d.Headers[HeaderMsgID] = []string{id}
	}
	return d, nil
}

// RedriveMsg is the message that puts a dead letter back on its original
// subject, with its original headers (Nats-Msg-Id replaced so the stream's
// duplicate window does not drop it).
func (d *DeadLetter) RedriveMsg() *nats.Msg {
	m := nats.NewMsg(d.Subject)
	m.Data = d.Data
	for k, v := range d.Headers {
		m.Header[k] = append([]string(nil), v...)
	}
	m.Header.Set(HeaderMsgID, fmt.Sprintf("redrive.%d.%s", d.DLQSeq, firstHeader(d.Headers, HeaderMsgID)))
	return m
}

// DeadLetterer stores dead letters in KW_DLQ.
type DeadLetterer struct {
	js     jetstream.JetStream
	worker string
}

// NewDeadLetterer returns a DeadLetterer naming worker in every dead letter.
func NewDeadLetterer(js jetstream.JetStream, worker string) *DeadLetterer {
	return &DeadLetterer{js: js, worker: worker}
}

// Send dead-letters msg and waits for KW_DLQ to store it. Only after Send
// succeeds may the caller Term or Ack the original.
func (d *DeadLetterer) Send(ctx context.Context, msg jetstream.Msg, reason Reason, detail string) error {
	return d.SendLetter(ctx, NewDeadLetter(msg, d.worker, reason, detail))
}

// SendLetter stores an already built dead letter.
func (d *DeadLetterer) SendLetter(ctx context.Context, dl *DeadLetter) error {
	if _, err := d.js.PublishMsg(ctx, dl.Msg()); err != nil {
		return fmt.Errorf("events: dead-lettering message from %s (reason %s): %w", dl.Subject, dl.Reason, err)
	}
	return nil
}

// redactInline removes content.inline from a JSON asset event, so plaintext
// never rests in KW_DLQ. Bytes that are not a JSON object are kept as they
// are, unless they mention "inline": then nothing of them is kept.
func redactInline(data []byte) ([]byte, []string) {
	var doc map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		if bytes.Contains(data, []byte(`"inline"`)) {
			// Unparseable, but it may carry inline plaintext: keep nothing.
			return []byte{}, []string{"data"}
		}
		return data, nil
	}
	raw, ok := doc["content"]
	if !ok {
		return data, nil
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(raw, &content); err != nil {
		if bytes.Contains(raw, []byte(`"inline"`)) {
			return []byte{}, []string{"data"}
		}
		return data, nil
	}
	if _, ok := content["inline"]; !ok {
		return data, nil
	}
	delete(content, "inline")
	c, err := json.Marshal(content)
	if err != nil {
		return data, nil
	}
	doc["content"] = c
	out, err := json.Marshal(doc)
	if err != nil {
		return data, nil
	}
	return out, []string{"content.inline"}
}

func firstHeader(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func clipDetail(s string) string {
	if len(s) > MaxDetailLen {
		return s[:MaxDetailLen-3] + "..."
	}
	// Header values cannot carry line breaks.
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
