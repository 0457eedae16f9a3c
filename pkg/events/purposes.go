package events

import (
	"fmt"
	"strings"
)

// Purpose is why a reader asks for an asset's key (the key broker's
// UnwrapRequest.purpose). A closed set: a reader's credential grants some
// of them, a tenant may deny some (tenant configuration denied_purposes),
// and every KeyAccess record names the one asked for.
type Purpose string

const (
	// PurposePlayback: a person views or listens (viewer, player).
	PurposePlayback Purpose = "playback"
	// PurposeTranscription: machine processing: transcripts, captions,
	// summaries.
	PurposeTranscription Purpose = "transcription"
	// PurposeExport: the tenant's own export or download.
	PurposeExport Purpose = "export"
	// PurposeSupport: the platform's support staff, at the tenant's
	// request.
	PurposeSupport Purpose = "support"
	// PurposeLegalHold: legal hold, e-discovery.
	PurposeLegalHold Purpose = "legal_hold"
)

// Purposes lists the set, in this order.
var Purposes = []Purpose{PurposePlayback, PurposeTranscription, PurposeExport, PurposeSupport, PurposeLegalHold}

// ValidatePurpose returns nil for a member of Purposes, else an error naming
// the value (clipped) and the set. The error is a *FieldError on "purpose"
// and matches ErrInvalid; callers checking another field (a list entry)
// take its Problem and Fix.
func ValidatePurpose(p string) error {
	for _, q := range Purposes {
		if p == string(q) {
			return nil
		}
	}
	problem := fmt.Sprintf("%q is not a purpose", clip(p))
	if p == "" {
		problem = "is empty"
	}
	return fieldErr("purpose", problem, "use one of "+purposeList())
}

// purposeList is the set as text: "playback, transcription, …".
func purposeList() string {
	names := make([]string, len(Purposes))
	for i, p := range Purposes {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}
