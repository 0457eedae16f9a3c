package awsemu

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/keyward/keyward/pkg/kms/kmstest"
)

// TargetPrefix starts the X-Amz-Target header of every AWS KMS operation.
const TargetPrefix = "TrentService."

// Classify is the kmstest.Classifier of AWS KMS requests: the operation is
// the X-Amz-Target without "TrentService." (so it reads "GenerateDataKey",
// "Encrypt", "Decrypt", like the kms.Op* constants and Faults.Deny); a
// target of any other service is kept whole, and a missing one is "".
// The key is the body's KeyId (or TargetKeyId), as the client sent it.
func Classify(r *http.Request, body []byte) (op, keyID string) {
	target := r.Header.Get("X-Amz-Target")
	op = strings.TrimPrefix(target, TargetPrefix)
	var b struct{ KeyId, TargetKeyId string }
	if json.Unmarshal(body, &b) == nil {
		keyID = b.KeyId
		if keyID == "" {
			keyID = b.TargetKeyId
		}
	}
	return op, keyID
}

var _ kmstest.Classifier = Classify

// Renderer writes AWS KMS's JSON error shape ({"__type": ..., "message": ...},
// Content-Type application/x-amz-json-1.1) for the faults of a
// kmstest.Server.
type Renderer struct{}

var _ kmstest.Renderer = Renderer{}

// Throttled writes KMS's ThrottlingException (HTTP 400, as KMS sends it).
func (Renderer) Throttled(w http.ResponseWriter) {
	writeError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
}

// ServerError writes AWS's ServiceUnavailable (HTTP 503).
func (Renderer) ServerError(w http.ResponseWriter) {
	writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "Service Unavailable")
}

// Denied writes the AccessDeniedException KMS sends when neither the key
// policy nor IAM allows op (HTTP 400, with "Message" capitalised as KMS
// does).
func (Renderer) Denied(w http.ResponseWriter, op string) {
	msg := "User: arn:aws:sts::" + DefaultAccount + ":assumed-role/keyward/keyward is not authorized to perform: kms:" + op +
		" on this resource because no resource-based policy allows the kms:" + op + " action"
	writeJSON(w, http.StatusBadRequest, map[string]string{"__type": "AccessDeniedException", "Message": msg})
}

// writeError writes {"__type": code, "message": msg} with status.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	body := map[string]string{"__type": code}
	if msg != "" {
		body["message"] = msg
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // a map of strings always marshals
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", newUUID())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
