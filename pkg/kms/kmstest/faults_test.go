package kmstest_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms/kmstest"
)

type plainRenderer struct{}

func (plainRenderer) Throttled(w http.ResponseWriter) {
	http.Error(w, "slow down", http.StatusTooManyRequests)
}
func (plainRenderer) ServerError(w http.ResponseWriter) {
	http.Error(w, "oops", http.StatusServiceUnavailable)
}
func (plainRenderer) Denied(w http.ResponseWriter, op string) {
	http.Error(w, "denied "+op, http.StatusForbidden)
}

func classify(r *http.Request, _ []byte) (string, string) {
	return r.URL.Path[1:], r.URL.Query().Get("key")
}

func TestServerFaults(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		var opts []kmstest.ServerOption
		if tlsOn {
			opts = append(opts, kmstest.WithTLS())
		}
		s, err := kmstest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), classify, plainRenderer{}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		get := func(path string, timeout time.Duration) (int, error) {
			c := s.Client()
			c.Timeout = timeout
			resp, err := c.Get(s.URL + path)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		if code, err := get("/Encrypt?key=k1", time.Second); err != nil || code != 200 {
			t.Fatalf("normal: %d %v", code, err)
		}
		s.Faults.Set(kmstest.FaultServerError)
		if code, _ := get("/Encrypt", time.Second); code != 503 {
			t.Errorf("server error: %d", code)
		}
		s.Faults.Set(kmstest.FaultThrottle)
		if code, _ := get("/Encrypt", time.Second); code != 429 {
			t.Errorf("throttle: %d", code)
		}
		s.Faults.Set(kmstest.FaultHang)
		start := time.Now()
		if _, err := get("/Encrypt", 200*time.Millisecond); err == nil || time.Since(start) < 150*time.Millisecond {
			t.Errorf("hang answered: %v after %s", err, time.Since(start))
		}
		s.Faults.Set(kmstest.FaultRefuse)
		if _, err := get("/Encrypt", time.Second); err == nil {
			t.Error("refused server answered")
		}
		s.Faults.Set(kmstest.FaultNone)
		if code, err := get("/Encrypt", time.Second); err != nil || code != 200 {
			t.Fatalf("after the faults: %d %v", code, err)
		}
		s.Faults.Deny("Decrypt")
		if code, _ := get("/Decrypt", time.Second); code != 403 {
			t.Errorf("denied: %d", code)
		}
		if code, _ := get("/Encrypt", time.Second); code != 200 {
			t.Errorf("other op while Decrypt denied: %d", code)
		}
		s.Faults.Allow("Decrypt")
		if ops := s.Faults.Ops(); ops["Encrypt"] < 5 || ops["Decrypt"] != 1 {
			t.Errorf("request log: %v", ops)
		}
		if r := s.Faults.Requests(); r[0].KeyID != "k1" {
			t.Errorf("first request key %q", r[0].KeyID)
		}
	}
}
