package svc_test

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/svc"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFlagsPrecedence(t *testing.T) {
	var s string
	var n int
	var d time.Duration
	var b bool
	var z int64
	f := svc.NewFlags("x", env(map[string]string{"S": "from-env", "N": "7", "D": "3s", "B": "true", "Z": "64MiB"}), io.Discard)
	f.String(&s, "s", "S", "default", "")
	f.Int(&n, "n", "N", 1, "")
	f.Duration(&d, "d", "D", time.Second, "")
	f.Bool(&b, "b", "B", false, "")
	f.Size(&z, "z", "Z", 1, "")
	if err := f.Parse([]string{"-n", "9"}); err != nil {
		t.Fatal(err)
	}
	if s != "from-env" || n != 9 || d != 3*time.Second || !b || z != 64<<20 {
		t.Fatalf("got s=%q n=%d d=%s b=%v z=%d", s, n, d, b, z)
	}
}

func TestFlagsReportEveryBadValue(t *testing.T) {
	var n int
	var d time.Duration
	var z int64
	f := svc.NewFlags("x", env(map[string]string{"N": "seven", "D": "soon", "Z": "huge"}), io.Discard)
	f.Int(&n, "n", "N", 1, "")
	f.Duration(&d, "d", "D", time.Second, "")
	f.Size(&z, "z", "Z", 1, "")
	err := f.Parse(nil)
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, name := range []string{"N=", "D=", "Z="} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if err := svc.NewFlags("x", nil, io.Discard).Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "256KiB": 256 << 10, "64MiB": 64 << 20, "5GiB": 5 << 30, "1TiB": 1 << 40, "1KB": 1000, " 2 MiB ": 2 << 20} {
		if got, err := svc.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "10XB", "99999999999TiB"} {
		if _, err := svc.ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
	if got := svc.FormatSize(256 << 10); got != "256KiB" {
		t.Errorf("FormatSize = %s", got)
	}
}
