package events_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyward/keyward/pkg/events"
)

// The contract lives twice: as Go types here and as JSON Schemas in
// schemas/. These tests prove the two agree both ways.

const schemaDir = "../../schemas"

type contract struct {
	schema   string
	examples []string
	newValue func() any
	validate func(any) error
}

// validated makes the contract of an event type with a Validate method.
func validated[T any, PT interface {
	*T
	Validate() error
}](schema string, examples ...string) contract {
	return contract{
		schema:   schema,
		examples: examples,
		newValue: func() any { return PT(new(T)) },
		validate: func(v any) error { return v.(PT).Validate() },
	}
}

var contracts = []contract{
	validated[events.AssetCreated]("asset_created.schema.json", "asset_created.json", "asset_created_inline.json"),
	validated[events.AssetEncrypted]("asset_encrypted.schema.json", "asset_encrypted.json"),
	validated[events.AssetReencrypted]("asset_reencrypted.schema.json", "asset_reencrypted.json"),
	validated[events.AssetRejected]("asset_rejected.schema.json", "asset_rejected.json"),
	validated[events.KeyStatusChanged]("key_status_changed.schema.json", "key_status_changed.json"),
	validated[events.KeyObserved]("key_observed.schema.json", "key_observed.json"),
	validated[events.BreakerStateChanged]("breaker_state_changed.schema.json", "breaker_state_changed.json"),
	validated[events.ReencryptionProgress]("reencryption_progress.schema.json", "reencryption_progress.json"),
	validated[events.ReencryptionCompleted]("reencryption_completed.schema.json", "reencryption_completed.json"),
	validated[events.KeyEnrolled]("key_enrolled.schema.json", "key_enrolled.json"),
	validated[events.KeyAccess]("key_access.schema.json", "key_access.json", "key_access_refused.json"),
	validated[events.RotationStarted]("rotation_started.schema.json", "rotation_started.json"),
	validated[events.RotationCompleted]("rotation_completed.schema.json", "rotation_completed.json"),
	validated[events.DeprovisionScheduled]("deprovision_scheduled.schema.json", "deprovision_scheduled.json"),
	validated[events.DeprovisionCancelled]("deprovision_cancelled.schema.json", "deprovision_cancelled.json"),
	validated[events.DeprovisionCompleted]("deprovision_completed.schema.json", "deprovision_completed.json"),
	validated[events.CallAdmission]("call_admission.schema.json", "call_admission.json"),
	validated[events.CallStarted]("call_started.schema.json", "call_started.json"),
	validated[events.CallEnded]("call_ended.schema.json", "call_ended.json"),
	validated[events.CallAction]("call_action.schema.json", "call_action.json"),
	validated[events.PhoneSettingsChanged]("phone_settings_changed.schema.json", "phone_settings_changed.json"),
	validated[events.TenantChanged]("tenant_changed.schema.json", "tenant_changed.json", "tenant_changed_created.json"),
	{
		// A reply, not validated on receipt: it has no Validate.
		schema:   "call_decision.schema.json",
		examples: []string{"call_decision.json", "call_decision_error.json"},
		newValue: func() any { return new(events.CallDecision) },
		validate: func(any) error { return nil },
	},
	{
		schema:   "dead_letter.schema.json",
		examples: []string{"dead_letter.json"},
		newValue: func() any { return new(events.DeadLetter) },
		validate: func(any) error { return nil },
	},
}

func compile(t *testing.T, name string) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	path := filepath.Join(schemaDir, name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compiling %s: %v", name, err)
	}
	return s, doc.(map[string]any)
}

func instance(t *testing.T, b []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestExamplesAgree: every example validates against its schema, decodes
// strictly into the Go type, passes Go validation, and re-encodes to the
// same JSON (which the schema accepts again).
func TestExamplesAgree(t *testing.T) {
	for _, c := range contracts {
		sch, _ := compile(t, c.schema)
		for _, ex := range c.examples {
			t.Run(ex, func(t *testing.T) {
				raw, err := os.ReadFile(filepath.Join(schemaDir, "examples", ex))
				if err != nil {
					t.Fatal(err)
				}
				if err := sch.Validate(instance(t, raw)); err != nil {
					t.Fatalf("schema rejects example: %v", err)
				}
				v := c.newValue()
				if err := events.Decode(c.schema, raw, v); err != nil {
					t.Fatalf("Go type rejects example: %v", err)
				}
				if err := c.validate(v); err != nil {
					t.Fatalf("Go validation rejects example: %v", err)
				}
				out, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if err := sch.Validate(instance(t, out)); err != nil {
					t.Fatalf("schema rejects the Go encoding %s: %v", out, err)
				}
				var a, b any
				_ = json.Unmarshal(raw, &a)
				_ = json.Unmarshal(out, &b)
				if !reflect.DeepEqual(a, b) {
					t.Errorf("round trip changed the document:\n in: %s\nout: %s", raw, out)
				}
			})
		}
	}
}

// TestFieldsAgree: the schema's properties are exactly the Go type's JSON
// fields, at every level, and "required" is exactly the fields without
// omitempty.
func TestFieldsAgree(t *testing.T) {
	for _, c := range contracts {
		t.Run(c.schema, func(t *testing.T) {
			_, doc := compile(t, c.schema)
			compareObject(t, "", doc, reflect.TypeOf(c.newValue()).Elem())
		})
	}
}

var contentType = reflect.TypeOf(events.Content{})

func compareObject(t *testing.T, path string, schema map[string]any, typ reflect.Type) {
	t.Helper()
	props, required := schemaProps(schema)
	goFields, goRequired := jsonFields(typ)
	if typ == contentType {
		// Content has a custom encoding: bucket+object, or inline.
		goFields = map[string]reflect.Type{"bucket": reflect.TypeOf(""), "object": reflect.TypeOf(""), "inline": reflect.TypeOf([]byte(nil))}
		goRequired, required = nil, nil
	}
	if got, want := keys(props), keys(goFields); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: schema properties %v, Go fields %v", orRoot(path), got, want)
	}
	sort.Strings(required)
	sort.Strings(goRequired)
	if !reflect.DeepEqual(required, goRequired) {
		t.Errorf("%s: schema required %v, Go non-omitempty fields %v", orRoot(path), required, goRequired)
	}
	for name, ft := range goFields {
		ps, ok := props[name].(map[string]any)
		if !ok {
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" {
			compareObject(t, path+"."+name, ps, ft)
		}
	}
}

func schemaProps(s map[string]any) (map[string]any, []string) {
	props := map[string]any{}
	var required []string
	if p, ok := s["properties"].(map[string]any); ok {
		for k, v := range p {
			props[k] = v
		}
	}
	if r, ok := s["required"].([]any); ok {
		for _, v := range r {
			required = append(required, v.(string))
		}
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		if alts, ok := s[key].([]any); ok {
			for _, a := range alts {
				p, _ := schemaProps(a.(map[string]any))
				for k, v := range p {
					props[k] = v
				}
			}
		}
	}
	return props, required
}

func jsonFields(typ reflect.Type) (map[string]reflect.Type, []string) {
	fields := map[string]reflect.Type{}
	var required []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	return fields, required
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

// TestInvalidDocumentsAgree: documents the schema rejects, Go rejects too.
func TestInvalidDocumentsAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"tenant_id": "acme", "asset_id": "a1", "service": "team_chat", "owner_user_id": "u1",
			"origin": "cloud", "created_at": "2026-11-28T09:31:02Z", "content": map[string]any{"inline": "aGk="},
		}
	}
	cases := map[string]func(m map[string]any){
		"missing tenant":    func(m map[string]any) { delete(m, "tenant_id") },
		"uppercase tenant":  func(m map[string]any) { m["tenant_id"] = "Acme" },
		"tenant with dot":   func(m map[string]any) { m["tenant_id"] = "ac.me" },
		"tenant wildcard":   func(m map[string]any) { m["tenant_id"] = "*" },
		"asset leading dot": func(m map[string]any) { m["asset_id"] = ".a" },
		"asset too long":    func(m map[string]any) { m["asset_id"] = strings.Repeat("a", 129) },
		"bad service":       func(m map[string]any) { m["service"] = "Team Chat" },
		"empty owner":       func(m map[string]any) { m["owner_user_id"] = "" },
		"bad origin":        func(m map[string]any) { m["origin"] = "usb_stick" },
		"bad time":          func(m map[string]any) { m["created_at"] = "yesterday" },
		"no content":        func(m map[string]any) { m["content"] = map[string]any{} },
		"both content": func(m map[string]any) {
			m["content"] = map[string]any{"inline": "aGk=", "bucket": "KW_STAGING", "object": "o"}
		},
		"wrong bucket":          func(m map[string]any) { m["content"] = map[string]any{"bucket": "KW_VAULT", "object": "o"} },
		"bad base64":            func(m map[string]any) { m["content"] = map[string]any{"inline": "!!!"} },
		"negative size":         func(m map[string]any) { m["size"] = -1 },
		"bad sha":               func(m map[string]any) { m["sha256"] = "ABC" },
		"unknown field":         func(m map[string]any) { m["tenant"] = "acme" },
		"unknown content field": func(m map[string]any) { m["content"] = map[string]any{"inline": "aGk=", "url": "x"} },
		"size as string":        func(m map[string]any) { m["size"] = "12" },
	}
	// The base document itself is accepted by both, so the cases fail for
	// their own reason.
	schemaAndGoAgree(t, "asset_created.schema.json", base, decodeErr(events.DecodeAssetCreated), cases,
		map[string]mutation{"the base document": func(map[string]any) {}})
}

// TestInvalidReencryptedAgree: AssetReencrypted documents the schema rejects,
// Go rejects too, the purpose/mode rules included.
func TestInvalidReencryptedAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"tenant_id": "acme", "asset_id": "a1", "service": "team_chat",
			"from_mode": "fallback", "to_mode": "customer",
			"from_key_uri": "localkms:///fallback", "key_uri": "awskms://arn:aws:kms:eu-west-2:111122223333:key/k",
			"key_version": "1", "wrapped_seed": "d3JhcHBlZA==",
			"location": map[string]any{"bucket": "KW_VAULT", "object": "acme/a1"},
			"size":     1, "ciphertext_size": 200,
			"ciphertext_sha256": strings.Repeat("a", 64), "header_sha256": strings.Repeat("b", 64),
			"purpose": "heal", "job_id": "heal.acme.1", "reencrypted_at": "2026-11-28T10:15:07Z",
		}
	}
	cases := map[string]func(m map[string]any){
		"missing tenant":          func(m map[string]any) { delete(m, "tenant_id") },
		"tenant wildcard":         func(m map[string]any) { m["tenant_id"] = "*" },
		"asset leading dot":       func(m map[string]any) { m["asset_id"] = ".a" },
		"bad purpose":             func(m map[string]any) { m["purpose"] = "cleanup" },
		"missing purpose":         func(m map[string]any) { delete(m, "purpose") },
		"heal from customer":      func(m map[string]any) { m["from_mode"] = "customer" },
		"heal to platform":        func(m map[string]any) { m["to_mode"] = "platform" },
		"to fallback":             func(m map[string]any) { m["to_mode"] = "fallback" },
		"rotation from fallback":  func(m map[string]any) { m["purpose"] = "rotation" },
		"deprovision to customer": func(m map[string]any) { m["purpose"] = "deprovision" },
		"deprovision from platform": func(m map[string]any) {
			m["purpose"], m["from_mode"], m["to_mode"] = "deprovision", "platform", "platform"
		},
		"bad mode":          func(m map[string]any) { m["from_mode"] = "cloud" },
		"empty key":         func(m map[string]any) { m["key_uri"] = "" },
		"empty from key":    func(m map[string]any) { m["from_key_uri"] = "" },
		"empty version":     func(m map[string]any) { m["key_version"] = "" },
		"missing seed":      func(m map[string]any) { delete(m, "wrapped_seed") },
		"bad seed base64":   func(m map[string]any) { m["wrapped_seed"] = "!!!" },
		"staging bucket":    func(m map[string]any) { m["location"] = map[string]any{"bucket": "KW_STAGING", "object": "acme/a1"} },
		"negative size":     func(m map[string]any) { m["size"] = -1 },
		"bad sha":           func(m map[string]any) { m["ciphertext_sha256"] = "ABC" },
		"bad header sha":    func(m map[string]any) { m["header_sha256"] = strings.Repeat("A", 64) },
		"empty job":         func(m map[string]any) { m["job_id"] = "" },
		"bad time":          func(m map[string]any) { m["reencrypted_at"] = "later" },
		"unknown field":     func(m map[string]any) { m["mode"] = "customer" },
		"size as string":    func(m map[string]any) { m["size"] = "12" },
		"pending flag kept": func(m map[string]any) { m["pending_reencryption"] = false },
	}
	// Every purpose with its modes is accepted by both.
	valid := map[string]mutation{
		"heal":     func(map[string]any) {},
		"rotation": func(m map[string]any) { m["purpose"], m["from_mode"] = "rotation", "customer" },
		"deprovision": func(m map[string]any) {
			m["purpose"], m["from_mode"], m["to_mode"] = "deprovision", "customer", "platform"
		},
		"deprovision from fallback": func(m map[string]any) { m["purpose"], m["to_mode"] = "deprovision", "platform" },
	}
	schemaAndGoAgree(t, "asset_reencrypted.schema.json", base, decodeErr(events.DecodeAssetReencrypted), cases, valid)
}

// mutation changes a valid document into one case of a test.
type mutation = func(m map[string]any)

// schemaAndGoAgree checks, for each case, the document base() changed by
// it: the ones in reject must be refused by the schema file and by decode,
// the ones in accept taken by both. It is how every event type shows its
// JSON Schema and its Go validation draw the same line.
func schemaAndGoAgree(t *testing.T, schemaFile string, base func() map[string]any, decode func([]byte) error, reject, accept map[string]mutation) {
	t.Helper()
	sch, _ := compile(t, schemaFile)
	doc := func(mutate mutation) []byte {
		m := base()
		mutate(m)
		raw, _ := json.Marshal(m)
		return raw
	}
	for name, mutate := range reject {
		t.Run(name, func(t *testing.T) {
			raw := doc(mutate)
			if err := sch.Validate(instance(t, raw)); err == nil {
				t.Errorf("schema accepts %s", raw)
			}
			if err := decode(raw); err == nil {
				t.Errorf("Go accepts %s", raw)
			}
		})
	}
	for name, mutate := range accept {
		raw := doc(mutate)
		if err := sch.Validate(instance(t, raw)); err != nil {
			t.Errorf("%s: schema rejects %s: %v", name, raw, err)
		}
		if err := decode(raw); err != nil {
			t.Errorf("%s: Go rejects %s: %v", name, raw, err)
		}
	}
}

// decodeErr adapts a decoder to schemaAndGoAgree.
func decodeErr[T any](decode func([]byte) (*T, error)) func([]byte) error {
	return func(b []byte) error { _, err := decode(b); return err }
}
