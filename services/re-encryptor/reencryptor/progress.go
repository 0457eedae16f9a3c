package reencryptor

import (
	"context"
	"strconv"

	"github.com/keyward/keyward/pkg/events"
)

// progressEvent is the ReencryptionProgress of j's record now.
func progressEvent(j *Job) *events.ReencryptionProgress {
	eta := 0.0
	if j.Rate > 0 && j.Left > 0 {
		eta = float64(j.Left) / j.Rate
	}
	return &events.ReencryptionProgress{
		TenantID: j.TenantID, JobID: j.ID, Purpose: j.Purpose, State: j.State,
		Reason: j.Reason, Detail: j.Detail, ToKeyURI: j.ToKeyURI, FromKeyURIs: j.FromKeyURIs(),
		Done: j.Done, Skipped: j.Skipped, Failed: j.Failed, Left: j.Left, Bytes: j.Bytes,
		RatePerSecond: j.Rate, BytesPerSecond: j.BytesRate, ETASeconds: eta,
		StartedAt: j.StartedAt, At: j.UpdatedAt,
	}
}

// publishProgress publishes j's progress (best effort: the job record in
// KV is the durable state; a lost progress event is replaced by the next).
func (w *Worker) publishProgress(ctx context.Context, j *Job) {
	ev := progressEvent(j)
	_, err := w.publisher.Publish(ctx, events.Outgoing{
		Subject: events.SubjectReencryptProgress(j.TenantID),
		MsgID:   "progress." + j.ID + "." + strconv.FormatUint(j.revision, 10),
		Type:    events.TypeReencryptionProgress, Event: ev,
	})
	if err != nil {
		w.log.Warn("publishing re-encryption progress", "job_id", j.ID, "error", err)
	}
}

// publishCompleted publishes ReencryptionCompleted (once per job: the
// message id is the job's).
func (w *Worker) publishCompleted(ctx context.Context, j *Job) error {
	ev := &events.ReencryptionCompleted{
		TenantID: j.TenantID, JobID: j.ID, Purpose: j.Purpose, ToKeyURI: j.ToKeyURI, FromKeyURIs: j.FromKeyURIs(),
		Done: j.Done, Skipped: j.Skipped, Failed: j.Failed, Bytes: j.Bytes,
		StartedAt: j.StartedAt, CompletedAt: j.CompletedAt,
	}
	_, err := w.publisher.Publish(ctx, events.Outgoing{
		Subject: events.SubjectReencryptCompleted(j.TenantID),
		MsgID:   "reencryption_completed." + j.ID,
		Type:    events.TypeReencryptionCompleted, Event: ev,
	})
	return err
}
