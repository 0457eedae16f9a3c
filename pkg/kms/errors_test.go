package kms_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
)

// sdkError stands in for an SDK's typed error.
type sdkError struct{ code string }

func (e *sdkError) Error() string { return "sdk: " + e.code }

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		code      kms.Code
		sentinel  error
		unusable  bool
		endpoint  bool
		retryable bool
	}{
		{kms.CodeEndpointUnreachable, kms.ErrEndpointUnreachable, false, true, true},
		{kms.CodeThrottled, kms.ErrThrottled, false, false, true},
		{kms.CodeKeyDisabled, kms.ErrKeyDisabled, true, false, false},
		{kms.CodeAccessDenied, kms.ErrAccessDenied, true, false, false},
		{kms.CodeKeyNotFound, kms.ErrKeyNotFound, true, false, false},
		{kms.CodeInvalidCiphertext, kms.ErrInvalidCiphertext, false, false, false},
		{kms.CodeInvalidArgument, kms.ErrInvalidArgument, false, false, false},
		{kms.CodeInternal, kms.ErrInternal, false, false, false},
	}
	if len(tests) != len(kms.Codes()) {
		t.Fatalf("table has %d codes, kms.Codes() has %d", len(tests), len(kms.Codes()))
	}
	sentinels := []error{kms.ErrEndpointUnreachable, kms.ErrThrottled, kms.ErrKeyDisabled, kms.ErrAccessDenied,
		kms.ErrKeyNotFound, kms.ErrInvalidCiphertext, kms.ErrInvalidArgument, kms.ErrInternal}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			if !tt.code.Valid() || tt.code.Sentinel() != tt.sentinel {
				t.Fatalf("Valid() = %v, Sentinel() = %v; want true, %v", tt.code.Valid(), tt.code.Sentinel(), tt.sentinel)
			}
			sdk := &sdkError{code: "SomeException"}
			err := fmt.Errorf("encryptor: %w", &kms.Error{Code: tt.code, Provider: "awskms", Op: "Decrypt", Key: "awskms://alias/k?region=eu-west-2", Err: sdk})
			if got := kms.CodeOf(err); got != tt.code {
				t.Errorf("CodeOf = %s, want %s", got, tt.code)
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == tt.sentinel; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got, want)
				}
			}
			if got := errors.Is(err, kms.ErrKeyUnusable); got != tt.unusable {
				t.Errorf("errors.Is(err, ErrKeyUnusable) = %v, want %v", got, tt.unusable)
			}
			if got := kms.IsKeyUnusable(err); got != tt.unusable {
				t.Errorf("IsKeyUnusable = %v, want %v", got, tt.unusable)
			}
			if got := kms.IsEndpointFailure(err); got != tt.endpoint {
				t.Errorf("IsEndpointFailure = %v, want %v", got, tt.endpoint)
			}
			if got := kms.IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retryable)
			}
			if kms.IsCanceled(err) {
				t.Error("IsCanceled = true")
			}
			var got *sdkError
			if !errors.As(err, &got) || got != sdk {
				t.Errorf("errors.As(err, *sdkError) = %v, want the SDK error", got)
			}
			want := "encryptor: kms: awskms Decrypt awskms://alias/k?region=eu-west-2: " + string(tt.code) + ": sdk: SomeException"
			if err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestCodeOfOtherErrors(t *testing.T) {
	canceled := &kms.Error{Code: kms.CodeInternal, Provider: "localkms", Op: "Decrypt", Err: context.Canceled}
	tests := []struct {
		name     string
		err      error
		code     kms.Code
		canceled bool
	}{
		{"nil", nil, "", false},
		{"plain error", errors.New("boom"), kms.CodeInternal, false},
		{"context.Canceled", context.Canceled, kms.CodeInternal, true},
		{"context.DeadlineExceeded", fmt.Errorf("x: %w", context.DeadlineExceeded), kms.CodeInternal, true},
		{"kms error wrapping a cancellation", canceled, kms.CodeInternal, true},
		{"unknown code", &kms.Error{Code: "made_up"}, kms.CodeInternal, false},
		{"empty code", &kms.Error{}, kms.CodeInternal, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kms.CodeOf(tt.err); got != tt.code {
				t.Errorf("CodeOf = %q, want %q", got, tt.code)
			}
			if got := kms.IsCanceled(tt.err); got != tt.canceled {
				t.Errorf("IsCanceled = %v, want %v", got, tt.canceled)
			}
			if kms.IsEndpointFailure(tt.err) || kms.IsRetryable(tt.err) || kms.IsKeyUnusable(tt.err) {
				t.Errorf("classified as endpoint failure, retryable or unusable key")
			}
		})
	}
	// An unreachable error caused by a cancellation (a provider used without
	// the Client) does not count against the breaker.
	err := &kms.Error{Code: kms.CodeEndpointUnreachable, Err: context.Canceled}
	if kms.IsEndpointFailure(err) {
		t.Error("IsEndpointFailure of a cancelled call = true")
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *kms.Error
		want string
	}{
		{&kms.Error{Code: kms.CodeKeyDisabled}, "kms: key_disabled"},
		{&kms.Error{Code: kms.CodeKeyNotFound, Provider: "localkms", Err: fs.ErrNotExist}, "kms: localkms: key_not_found: file does not exist"},
		{&kms.Error{Provider: "localkms", Op: "Encrypt", Key: "localkms://k.key"}, "kms: localkms Encrypt localkms://k.key: internal"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	// Unwrap lists the code sentinel, the class sentinel, then the cause.
	e := &kms.Error{Code: kms.CodeAccessDenied, Err: fs.ErrPermission}
	u := e.Unwrap()
	if len(u) != 3 || u[0] != kms.ErrAccessDenied || u[1] != kms.ErrKeyUnusable || u[2] != fs.ErrPermission {
		t.Errorf("Unwrap() = %v", u)
	}
	if u := (&kms.Error{Code: kms.CodeThrottled}).Unwrap(); len(u) != 1 || u[0] != kms.ErrThrottled {
		t.Errorf("Unwrap() without cause = %v", u)
	}
	if strings.Contains(kms.ErrKeyUnusable.Error(), "%") {
		t.Error("sentinel message has a format verb")
	}
}
