package tenant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	schemaPath  = filepath.Join("..", "..", "schemas", "tenant.schema.json")
	examplePath = filepath.Join("..", "..", "schemas", "examples", "tenant.json")
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	abs, err := filepath.Abs(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(abs)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaPath, err)
	}
	return s
}

func readSchemaDoc(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	return doc
}

func schemaValidate(s *jsonschema.Schema, doc string) error {
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

func TestSchemaHeader(t *testing.T) {
	doc := readSchemaDoc(t)
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", doc["$schema"])
	}
	if doc["$id"] != "https://keyward.dev/schemas/tenant.schema.json" {
		t.Errorf("$id = %v", doc["$id"])
	}
}

func TestSchemaExample(t *testing.T) {
	s := compileSchema(t)
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemaValidate(s, string(data)); err != nil {
		t.Errorf("example fails the schema: %v", err)
	}
	c, err := Parse(data, WithServiceCatalog(DefaultServices))
	if err != nil {
		t.Fatalf("Parse(example) err = %v", err)
	}
	if !c.Enrolled() || c.UpdatedAt.IsZero() {
		t.Errorf("Parse(example) = %+v", c)
	}
	// The Go type keeps every field of the example: re-encoding it yields
	// the same document.
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal(data, &a)
	_ = json.Unmarshal(out, &b)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("example does not round-trip through Config:\n in %s\nout %s", compact(data), out)
	}
}

func compact(data []byte) string {
	var b bytes.Buffer
	_ = json.Compact(&b, data)
	return b.String()
}

// TestSchemaMatchesGoType walks the schema and the Go types together: at
// every object the schema's property names equal the struct's JSON field
// names, additional properties are refused, and the schema's required
// properties are fields.
func TestSchemaMatchesGoType(t *testing.T) {
	doc := readSchemaDoc(t)
	defs, _ := doc["$defs"].(map[string]any)
	var walk func(node map[string]any, typ reflect.Type, path string)
	resolve := func(node map[string]any) map[string]any {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok {
			t.Fatalf("unexpected $ref %q", ref)
		}
		def, ok := defs[name].(map[string]any)
		if !ok {
			t.Fatalf("$ref %q not in $defs", ref)
		}
		return def
	}
	walk = func(node map[string]any, typ reflect.Type, path string) {
		node = resolve(node)
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch {
		case typ.Kind() == reflect.Struct && typ != timeType:
			if node["type"] != "object" {
				t.Errorf("%s: schema type %v, Go struct %s", path, node["type"], typ)
			}
			if node["additionalProperties"] != false {
				t.Errorf("%s: additionalProperties is not false", path)
			}
			props, _ := node["properties"].(map[string]any)
			var schemaNames []string
			for name := range props {
				schemaNames = append(schemaNames, name)
			}
			goNames := jsonNames(typ)
			if !slices.Equal(sortedCopy(schemaNames), sortedCopy(goNames)) {
				t.Errorf("%s: schema properties %q, Go fields %q", path, sortedCopy(schemaNames), sortedCopy(goNames))
			}
			fields := jsonFields(typ)
			req, _ := node["required"].([]any)
			for _, r := range req {
				if _, ok := fields[r.(string)]; !ok {
					t.Errorf("%s: required %q is not a Go field", path, r)
				}
			}
			for name, p := range props {
				if f, ok := fields[name]; ok {
					walk(p.(map[string]any), f.Type, joinPath(path, name))
				}
			}
		case typ.Kind() == reflect.Slice:
			if node["type"] != "array" {
				t.Errorf("%s: schema type %v, Go slice %s", path, node["type"], typ)
			}
			items, ok := node["items"].(map[string]any)
			if !ok {
				// A list of strings expressed through anyOf.
				for _, alt := range node["anyOf"].([]any) {
					if it, ok := alt.(map[string]any)["items"].(map[string]any); ok {
						items = it
					}
				}
			}
			if items == nil {
				t.Fatalf("%s: no items schema", path)
			}
			walk(items, typ.Elem(), path+"[]")
		case typ == timeType:
			if node["type"] != "string" || node["format"] != "date-time" {
				t.Errorf("%s: time.Time is not a date-time string in the schema", path)
			}
		case typ == reflect.TypeFor[Duration]():
			if node["type"] != "string" || node["pattern"] == nil {
				t.Errorf("%s: a Duration is not a duration string in the schema", path)
			}
		case typ.Kind() == reflect.String:
			if node["type"] != "string" && node["enum"] == nil {
				t.Errorf("%s: schema type %v, Go string", path, node["type"])
			}
		case typ.Kind() == reflect.Bool:
			if node["type"] != "boolean" {
				t.Errorf("%s: schema type %v, Go bool", path, node["type"])
			}
		default:
			t.Errorf("%s: Go type %s not handled by this test", path, typ)
		}
	}
	walk(doc, reflect.TypeFor[Config](), "")

	// The key role enum is the Go roles.
	roles := resolve(map[string]any{"$ref": "#/$defs/key"})["properties"].(map[string]any)["role"].(map[string]any)["enum"].([]any)
	var got []string
	for _, r := range roles {
		got = append(got, r.(string))
		if !KeyRole(r.(string)).Valid() {
			t.Errorf("schema role %q is not a valid KeyRole", r)
		}
	}
	if !slices.Equal(got, []string{string(RolePrimary), string(RoleReplica), string(RoleRetiring)}) {
		t.Errorf("schema roles %q", got)
	}
}

// TestSchemaAndParseAgree: documents both must accept, documents both must
// refuse, and the rules only Go checks.
func TestSchemaAndParseAgree(t *testing.T) {
	s := compileSchema(t)
	key := func(uri, role, at string) string {
		return fmt.Sprintf(`{"uri":%q,"role":%q,"enrolled_at":%q}`, uri, role, at)
	}
	primary := key(awsPrimary, "primary", "2026-01-15T09:00:00Z")
	doc := func(fields string) string {
		return `{"tenant_id":"acme","keys":[` + primary + `],"fallback_enabled":true,"phone":{"drop_calls":false}` + fields + `}`
	}
	var manyKeys []string
	manyKeys = append(manyKeys, primary)
	for i := 1; i <= MaxKeys; i++ {
		manyKeys = append(manyKeys, key(fmt.Sprintf("azurekv://acme-vault.vault.azure.net/keys/k%d", i), "retiring", "2026-01-15T09:00:00Z"))
	}

	valid := map[string]string{
		"minimal":              `{"tenant_id":"acme"}`,
		"full":                 doc(`,"display_name":"Acme","services":["cloud_recording"],"licensed_users":["u-1","ユーザー"],"recipients":["a@acme.example"],"updated_at":"2026-02-01T10:00:00.5+01:00"`),
		"wildcards":            doc(`,"services":["*"],"licensed_users":["*"]`),
		"empty lists":          doc(`,"services":[],"licensed_users":[],"recipients":[]`),
		"azure and oci":        `{"tenant_id":"acme","keys":[` + key(azureKey, "primary", "2026-01-15T09:00:00Z") + `,` + key(ociKey, "replica", "2026-01-15T09:00:00Z") + `]}`,
		"max keys":             `{"tenant_id":"acme","keys":[` + strings.Join(manyKeys[:MaxKeys], ",") + `]}`,
		"long user":            doc(`,"licensed_users":["` + strings.Repeat("u", MaxUserIDLen) + `"]`),
		"display name accent":  doc(`,"display_name":"Ærø Öl — 株式会社"`),
		"fallback choices":     doc(`,"fallback_on":"any","hold_window":"1m30s"`),
		"outage, no hold":      doc(`,"fallback_on":"outage","hold_window":"0s"`),
		"denied purposes":      doc(`,"denied_purposes":["support","legal_hold"]`),
		"every purpose denied": doc(`,"denied_purposes":["playback","transcription","export","support","legal_hold"]`),
		"no purpose denied":    doc(`,"denied_purposes":[]`),
	}
	for name, d := range valid {
		if err := schemaValidate(s, d); err != nil {
			t.Errorf("valid %q: schema rejects it: %v", name, err)
		}
		if _, err := Parse([]byte(d)); err != nil {
			t.Errorf("valid %q: Parse rejects it: %v", name, err)
		}
	}

	invalid := map[string]string{
		"tenant id missing":       `{"fallback_enabled":true}`,
		"tenant id upper case":    `{"tenant_id":"Acme"}`,
		"tenant id too long":      `{"tenant_id":"` + strings.Repeat("a", 64) + `"}`,
		"tenant id null":          `{"tenant_id":null}`,
		"not an object":           `["acme"]`,
		"unknown field":           doc(`,"fallback":true`),
		"unknown key field":       `{"tenant_id":"acme","keys":[{"uri":"` + awsPrimary + `","role":"primary","enrolled_at":"2026-01-15T09:00:00Z","alias":"x"}]}`,
		"unknown phone field":     `{"tenant_id":"acme","phone":{"drop_calls":true,"record":false}}`,
		"field name case":         `{"Tenant_ID":"acme"}`,
		"display name control":    doc(`,"display_name":"a\nb"`),
		"display name too long":   doc(`,"display_name":"` + strings.Repeat("x", MaxDisplayNameLen+1) + `"`),
		"key uri missing":         `{"tenant_id":"acme","keys":[{"role":"primary","enrolled_at":"2026-01-15T09:00:00Z"}]}`,
		"key uri bad scheme":      `{"tenant_id":"acme","keys":[` + key("gcpkms://projects/p/keys/k", "primary", "2026-01-15T09:00:00Z") + `]}`,
		"key uri with space":      `{"tenant_id":"acme","keys":[` + key("azurekv://acme-vault.vault.azure.net/keys/a b", "primary", "2026-01-15T09:00:00Z") + `]}`,
		"key role missing":        `{"tenant_id":"acme","keys":[{"uri":"` + awsPrimary + `","enrolled_at":"2026-01-15T09:00:00Z"}]}`,
		"key role unknown":        `{"tenant_id":"acme","keys":[` + key(awsPrimary, "secondary", "2026-01-15T09:00:00Z") + `]}`,
		"enrolled_at missing":     `{"tenant_id":"acme","keys":[{"uri":"` + awsPrimary + `","role":"primary"}]}`,
		"enrolled_at not a time":  `{"tenant_id":"acme","keys":[` + key(awsPrimary, "primary", "yesterday") + `]}`,
		"too many keys":           `{"tenant_id":"acme","keys":[` + strings.Join(manyKeys, ",") + `]}`,
		"keys not an array":       `{"tenant_id":"acme","keys":{}}`,
		"service malformed":       doc(`,"services":["Cloud-Recording"]`),
		"service empty":           doc(`,"services":[""]`),
		"service wildcard mixed":  doc(`,"services":["*","cloud_recording"]`),
		"service duplicate":       doc(`,"services":["team_chat","team_chat"]`),
		"service not a string":    doc(`,"services":[7]`),
		"services null":           doc(`,"services":null`),
		"user empty":              doc(`,"licensed_users":[""]`),
		"user with space":         doc(`,"licensed_users":["u 1"]`),
		"user with nbsp":          doc(`,"licensed_users":["u\u00a01"]`),
		"user with tab":           doc(`,"licensed_users":["u\t1"]`),
		"user too long":           doc(`,"licensed_users":["` + strings.Repeat("u", MaxUserIDLen+1) + `"]`),
		"user wildcard mixed":     doc(`,"licensed_users":["u-1","*"]`),
		"user duplicate":          doc(`,"licensed_users":["u-1","u-1"]`),
		"recipient no at":         doc(`,"recipients":["security"]`),
		"recipient display name":  doc(`,"recipients":["Security <security@acme.example>"]`),
		"recipient too long":      doc(`,"recipients":["` + strings.Repeat("a", 250) + `@b.example"]`),
		"recipient duplicate":     doc(`,"recipients":["a@acme.example","a@acme.example"]`),
		"fallback not a boolean":  `{"tenant_id":"acme","fallback_enabled":"yes"}`,
		"phone not an object":     `{"tenant_id":"acme","phone":true}`,
		"drop_calls not boolean":  `{"tenant_id":"acme","phone":{"drop_calls":1}}`,
		"updated_at not a time":   `{"tenant_id":"acme","updated_at":"2026-02-01"}`,
		"updated_at not a string": `{"tenant_id":"acme","updated_at":0}`,
		"fallback_on unknown":     doc(`,"fallback_on":"always"`),
		"hold_window words":       doc(`,"hold_window":"10 seconds"`),
		"hold_window number":      doc(`,"hold_window":10`),
		"hold_window negative":    doc(`,"hold_window":"-1s"`),
		"denied purpose unknown":  doc(`,"denied_purposes":["debugging"]`),
		"denied purpose case":     doc(`,"denied_purposes":["Support"]`),
		"denied purpose empty":    doc(`,"denied_purposes":[""]`),
		"denied purpose wildcard": doc(`,"denied_purposes":["*"]`),
		"denied purpose repeated": doc(`,"denied_purposes":["support","support"]`),
		"denied purposes string":  doc(`,"denied_purposes":"support"`),
		"denied purposes null":    doc(`,"denied_purposes":null`),
	}
	for name, d := range invalid {
		if err := schemaValidate(s, d); err == nil {
			t.Errorf("invalid %q: the schema accepts it", name)
		}
		if _, err := Parse([]byte(d)); err == nil {
			t.Errorf("invalid %q: Parse accepts it", name)
		}
	}

	// Rules only Go can check (the schema's description lists them).
	goOnly := map[string]string{
		"two primaries":      `{"tenant_id":"acme","keys":[` + primary + `,` + key(awsReplica, "primary", "2026-01-15T09:00:00Z") + `]}`,
		"no primary":         `{"tenant_id":"acme","keys":[` + key(awsPrimary, "replica", "2026-01-15T09:00:00Z") + `]}`,
		"duplicate key":      `{"tenant_id":"acme","keys":[` + primary + `,` + key(awsPrimary, "retiring", "2026-01-15T09:00:00Z") + `]}`,
		"unparsable key":     `{"tenant_id":"acme","keys":[` + key("awskms://alias/keyward", "primary", "2026-01-15T09:00:00Z") + `]}`,
		"local key":          `{"tenant_id":"acme","keys":[` + key(localKey, "primary", "2026-01-15T09:00:00Z") + `]}`,
		"recipient any case": doc(`,"recipients":["A@acme.example","a@acme.example"]`),
		"hold window > 5m":   doc(`,"hold_window":"6m"`),
	}
	for name, d := range goOnly {
		if _, err := Parse([]byte(d)); err == nil {
			t.Errorf("go-only invalid %q: Parse accepts it", name)
		}
	}
}

// TestSchemaCharacterClasses proves the schema's character patterns and the
// Go checks refuse exactly the same characters, over all of Unicode.
func TestSchemaCharacterClasses(t *testing.T) {
	doc := readSchemaDoc(t)
	defs := doc["$defs"].(map[string]any)
	props := doc["properties"].(map[string]any)
	tests := []struct {
		name    string
		pattern string
		bad     func(rune) bool
	}{
		{"user_id", defs["user_id"].(map[string]any)["pattern"].(string), badUserIDRune},
		{"display_name", props["display_name"].(map[string]any)["pattern"].(string), unicode.IsControl},
	}
	for _, tt := range tests {
		re := regexp.MustCompile(tt.pattern)
		mismatches := 0
		for r := rune(0); r <= unicode.MaxRune; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue // surrogates are not characters
			}
			schemaOK := re.MatchString("a" + string(r) + "b")
			if schemaOK == tt.bad(r) {
				mismatches++
				if mismatches <= 5 {
					t.Errorf("%s: U+%04X schema accepts=%v, Go refuses=%v", tt.name, r, schemaOK, tt.bad(r))
				}
			}
		}
		if mismatches > 0 {
			t.Errorf("%s: %d characters disagree", tt.name, mismatches)
		}
	}
}
