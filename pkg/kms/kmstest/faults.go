package kmstest

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Fault is a failure an emulator can be told to produce, so fault tests
// need no other tool.
type Fault int

const (
	// FaultNone: answer normally.
	FaultNone Fault = iota
	// FaultHang: accept the request and never answer (until the client gives
	// up or the fault is cleared).
	FaultHang
	// FaultRefuse: refuse connections (the listener is closed; connections
	// in progress are reset).
	FaultRefuse
	// FaultServerError: answer 5xx (503 Service Unavailable).
	FaultServerError
	// FaultThrottle: answer the provider's throttling error (HTTP 429 or its
	// equivalent).
	FaultThrottle
)

func (f Fault) String() string {
	return [...]string{"none", "hang", "refuse", "server_error", "throttle"}[f]
}

// Request is one request an emulator received, for least-privilege
// assertions: which operation, on which key.
type Request struct {
	Op    string
	KeyID string
	Time  time.Time
}

// Renderer writes a provider's own error responses.
type Renderer interface {
	// Throttled writes the provider's throttling error.
	Throttled(w http.ResponseWriter)
	// ServerError writes a 5xx.
	ServerError(w http.ResponseWriter)
	// Denied writes the provider's access-denied error for op.
	Denied(w http.ResponseWriter, op string)
}

// Classifier names the operation and key of a request (provider specific).
type Classifier func(r *http.Request, body []byte) (op, keyID string)

// Faults is the fault and request-log controller shared by the emulators.
// The zero value is not usable: use NewFaults.
type Faults struct {
	mu       sync.Mutex
	fault    Fault
	denied   map[string]bool // op → denied (a key policy missing that permission)
	log      []Request
	release  chan struct{} // closed to release hanging requests
	onRefuse func(bool)
}

// NewFaults returns a controller with no fault set.
func NewFaults() *Faults {
	return &Faults{denied: map[string]bool{}, release: make(chan struct{})}
}

// Set makes every following request fail with f (FaultNone clears).
func (f *Faults) Set(fault Fault) {
	f.mu.Lock()
	prev := f.fault
	f.fault = fault
	if prev == FaultHang && fault != FaultHang {
		close(f.release)
		f.release = make(chan struct{})
	}
	cb := f.onRefuse
	f.mu.Unlock()
	if cb != nil && (prev == FaultRefuse) != (fault == FaultRefuse) {
		cb(fault == FaultRefuse)
	}
}

// Current returns the fault in force.
func (f *Faults) Current() Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fault
}

// Deny makes op fail with the provider's access-denied error, as a key
// policy missing that permission would; Allow undoes it.
func (f *Faults) Deny(op string) {
	f.mu.Lock()
	f.denied[op] = true
	f.mu.Unlock()
}

// Allow undoes Deny.
func (f *Faults) Allow(op string) {
	f.mu.Lock()
	delete(f.denied, op)
	f.mu.Unlock()
}

// Requests returns a copy of the request log.
func (f *Faults) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.log...)
}

// Ops returns the set of operations received.
func (f *Faults) Ops() map[string]int {
	out := map[string]int{}
	for _, r := range f.Requests() {
		out[r.Op]++
	}
	return out
}

// ResetLog empties the request log.
func (f *Faults) ResetLog() {
	f.mu.Lock()
	f.log = nil
	f.mu.Unlock()
}

// Middleware applies the faults and logs the requests in front of next.
// body is read once by classify and restored for next.
func (f *Faults) Middleware(next http.Handler, classify Classifier, render Renderer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			render.ServerError(w)
			return
		}
		op, key := classify(r, body)
		f.mu.Lock()
		fault, denied, release := f.fault, f.denied[op], f.release
		f.log = append(f.log, Request{Op: op, KeyID: key, Time: time.Now()})
		f.mu.Unlock()
		switch {
		case fault == FaultHang:
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		case fault == FaultServerError:
			render.ServerError(w)
			return
		case fault == FaultThrottle:
			render.Throttled(w)
			return
		case fault == FaultRefuse:
			// A connection that got through before the listener closed.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					if tc, ok := c.(*net.TCPConn); ok {
						tc.SetLinger(0)
					}
					c.Close()
					return
				}
			}
			render.ServerError(w)
			return
		}
		if denied {
			render.Denied(w, op)
			return
		}
		next.ServeHTTP(w, r)
	})
}
