package awskms_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/kms/awskms"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The statement for one tenant and two platform roles, byte for byte.
func TestKeyPolicyStatementGolden(t *testing.T) {
	got, err := awskms.KeyPolicyStatement(awskms.PolicyParams{
		TenantID: "acme-corp",
		Principals: []string{
			"arn:aws:iam::444455556666:role/keyward-encryptor",
			"arn:aws:iam::444455556666:role/keyward/re-encryptor",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "key_policy_statement.golden.json")
	if *update {
		if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got+"\n" != string(want) {
		t.Errorf("KeyPolicyStatement =\n%s\nwant (%s)\n%s", got, path, want)
	}
}

// The statement's meaning, decoded: exactly the three actions, the given
// principals, and the tenant and context-key conditions.
func TestKeyPolicyStatement(t *testing.T) {
	cases := []struct {
		name       string
		params     awskms.PolicyParams
		wantErrors int // problems named in the error (0: valid)
	}{
		{"one role", awskms.PolicyParams{TenantID: "t1", Principals: []string{"arn:aws:iam::111122223333:role/keyward"}}, 0},
		{"role with path, GovCloud", awskms.PolicyParams{TenantID: "0-tenant", Principals: []string{"arn:aws-us-gov:iam::111122223333:role/platform/keyward"}}, 0},
		{"longest tenant id", awskms.PolicyParams{TenantID: strings.Repeat("a", 63), Principals: []string{"arn:aws:iam::111122223333:role/k"}}, 0},
		{"no tenant", awskms.PolicyParams{Principals: []string{"arn:aws:iam::111122223333:role/k"}}, 1},
		{"tenant with a dot", awskms.PolicyParams{TenantID: "acme.corp", Principals: []string{"arn:aws:iam::111122223333:role/k"}}, 1},
		{"tenant starting with '-'", awskms.PolicyParams{TenantID: "-acme", Principals: []string{"arn:aws:iam::111122223333:role/k"}}, 1},
		{"tenant too long", awskms.PolicyParams{TenantID: strings.Repeat("a", 64), Principals: []string{"arn:aws:iam::111122223333:role/k"}}, 1},
		{"no principals", awskms.PolicyParams{TenantID: "acme"}, 1},
		{"user, not role", awskms.PolicyParams{TenantID: "acme", Principals: []string{"arn:aws:iam::111122223333:user/k"}}, 1},
		{"wildcard", awskms.PolicyParams{TenantID: "acme", Principals: []string{"*"}}, 1},
		{"short account", awskms.PolicyParams{TenantID: "acme", Principals: []string{"arn:aws:iam::1111:role/k"}}, 1},
		{"duplicate role", awskms.PolicyParams{TenantID: "acme", Principals: []string{"arn:aws:iam::111122223333:role/k", "arn:aws:iam::111122223333:role/k"}}, 1},
		{"everything wrong", awskms.PolicyParams{TenantID: "ACME", Principals: []string{"root", "arn:aws:iam::111122223333:role/"}}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := awskms.KeyPolicyStatement(tc.params)
			if tc.wantErrors > 0 {
				if err == nil {
					t.Fatalf("KeyPolicyStatement(%+v) = %s, want an error", tc.params, got)
				}
				var joined interface{ Unwrap() []error }
				n := 1
				if errors.As(err, &joined) {
					n = len(joined.Unwrap())
				}
				if n != tc.wantErrors {
					t.Errorf("error names %d problems, want %d: %v", n, tc.wantErrors, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("KeyPolicyStatement(%+v) err = %v", tc.params, err)
			}
			var st struct {
				Sid       string
				Effect    string
				Principal struct{ AWS []string }
				Action    []string
				Resource  string
				Condition map[string]map[string]any
			}
			dec := json.NewDecoder(strings.NewReader(got))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&st); err != nil {
				t.Fatalf("statement is not the expected JSON: %v\n%s", err, got)
			}
			if st.Effect != "Allow" || st.Resource != "*" || st.Sid != awskms.PolicyStatementSID {
				t.Errorf("Effect %q, Resource %q, Sid %q", st.Effect, st.Resource, st.Sid)
			}
			if !slices.Equal(st.Principal.AWS, tc.params.Principals) {
				t.Errorf("principals = %q, want %q", st.Principal.AWS, tc.params.Principals)
			}
			if want := []string{"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}; !slices.Equal(st.Action, want) {
				t.Errorf("actions = %q, want exactly %q", st.Action, want)
			}
			if v := st.Condition["StringEquals"]["kms:EncryptionContext:keyward:tenant"]; v != tc.params.TenantID || len(st.Condition["StringEquals"]) != 1 {
				t.Errorf("StringEquals = %v, want the tenant %q only", st.Condition["StringEquals"], tc.params.TenantID)
			}
			keys, _ := json.Marshal(st.Condition["ForAllValues:StringEquals"])
			if string(keys) != `{"kms:EncryptionContextKeys":["keyward:tenant","keyward:purpose"]}` {
				t.Errorf("ForAllValues:StringEquals = %s", keys)
			}
			if len(st.Condition) != 2 {
				t.Errorf("conditions = %v, want exactly two operators", st.Condition)
			}
		})
	}
}
