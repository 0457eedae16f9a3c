package vault

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// NewObject is one object for PutNew.
type NewObject struct {
	Name string
	Data []byte
	Meta jetstream.ObjectMeta
}

// PutNew stores many new, small objects at once: every chunk and metadata
// message of every object is published asynchronously and the
// acknowledgements are awaited together, so storing a batch costs about one
// round trip instead of several per object.
//
// The layout is exactly the Object Store's (the same subjects, metadata
// document and digest), so the objects are read by any Object Store client.
// PutNew is for names that do not exist yet: unlike Put it does not look
// up and purge an earlier version's chunks (that lookup is the round trip it
// saves), so putting an existing name leaves the old chunks unreferenced.
// Use Put when the name may exist.
//
// The result has one entry per object: its info, or its error.
func (s *Store) PutNew(ctx context.Context, objs []NewObject) ([]*jetstream.ObjectInfo, []error) {
	infos := make([]*jetstream.ObjectInfo, len(objs))
	errs := make([]error, len(objs))
	type pending struct {
		obj     int
		futures []jetstream.PubAckFuture
	}
	var all []pending
	for i, o := range objs {
		if o.Name == "" {
			errs[i] = jetstream.ErrBadObjectMeta
			continue
		}
		id := nuid.Next()
		chunkSubj := "$O." + s.bucket + ".C." + id
		p := pending{obj: i}
		h := sha256.New()
		h.Write(o.Data)
		var perr error
		var chunks uint32
		for off := 0; off < len(o.Data); off += s.chunkSize {
			end := min(off+s.chunkSize, len(o.Data))
			f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: chunkSubj, Data: o.Data[off:end]})
			if err != nil {
				perr = err
				break
			}
			p.futures = append(p.futures, f)
			chunks++
		}
		if perr != nil {
			errs[i] = fmt.Errorf("vault: put %s/%s: %w", s.bucket, o.Name, perr)
			continue
		}
		meta := o.Meta
		meta.Name = o.Name
		meta.Opts = &jetstream.ObjectMetaOptions{ChunkSize: uint32(s.chunkSize)}
		info := &jetstream.ObjectInfo{
			ObjectMeta: meta,
			Bucket:     s.bucket,
			NUID:       id,
			Size:       uint64(len(o.Data)),
			Chunks:     chunks,
			Digest:     jetstream.GetObjectDigestValue(h),
		}
		data, err := json.Marshal(info)
		if err != nil {
			errs[i] = err
			continue
		}
		mm := nats.NewMsg("$O." + s.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(o.Name)))
		mm.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		mm.Data = data
		f, err := s.js.PublishMsgAsync(mm)
		if err != nil {
			errs[i] = fmt.Errorf("vault: put %s/%s: %w", s.bucket, o.Name, err)
			continue
		}
		p.futures = append(p.futures, f)
		infos[i] = info
		all = append(all, p)
	}
	for _, p := range all {
		for _, f := range p.futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if errs[p.obj] == nil {
					errs[p.obj] = fmt.Errorf("vault: put %s/%s: %w", s.bucket, objs[p.obj].Name, err)
				}
			case <-ctx.Done():
				if errs[p.obj] == nil {
					errs[p.obj] = ctx.Err()
				}
			}
		}
		if errs[p.obj] != nil {
			infos[p.obj] = nil
		}
	}
	return infos, errs
}
