package tenant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// Parse decodes a tenant configuration document strictly and validates it
// with opts. Field names match exactly (case-sensitive); an unknown field is
// an error that names its JSON path and suggests the closest known field
// within edit distance 2; a value of the wrong JSON type, a null, a time that
// is not RFC 3339 and trailing data are errors too. All such problems are
// reported at once, as with Validate: an errors.Join of *events.FieldError,
// each matching events.ErrInvalid.
func Parse(data []byte, opts ...ValidateOption) (*Config, error) {
	if err := checkDocument(data); err != nil {
		return nil, err
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		// checkDocument accepted it, so this is a mismatch between the two.
		return nil, &events.FieldError{Field: "document", Problem: "cannot be decoded: " + err.Error()}
	}
	if err := Validate(&c, opts...); err != nil {
		return nil, err
	}
	return &c, nil
}

var timeType = reflect.TypeFor[time.Time]()

// checkDocument walks the JSON document along the Config type and reports
// every unknown field, null and ill-typed value with its JSON path.
func checkDocument(data []byte) error {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &events.FieldError{Field: "document", Problem: fmt.Sprintf("is not valid JSON at byte %d: %v", se.Offset, se), Fix: "check the syntax"}
		}
		return &events.FieldError{Field: "document", Problem: "is not valid JSON", Fix: "check the syntax"}
	}
	var errs []error
	checkValue(json.RawMessage(data), reflect.TypeFor[Config](), "", &errs)
	return errors.Join(errs...)
}

func checkValue(raw json.RawMessage, t reflect.Type, path string, errs *[]error) {
	add := func(problem, fix string) {
		field := path
		if field == "" {
			field = "document"
		}
		*errs = append(*errs, &events.FieldError{Field: field, Problem: problem, Fix: fix})
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if path == "" {
			add("is null", "write a JSON object")
		} else {
			add("is null", "omit the field or give it a value")
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t != timeType:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			add("is not a JSON object", "")
			return
		}
		fields := jsonFields(t)
		names := make([]string, 0, len(obj))
		for name := range obj {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			sub := joinPath(path, name)
			f, ok := fields[name]
			if !ok {
				*errs = append(*errs, unknownField(sub, name, t))
				continue
			}
			checkValue(obj[name], f.Type, sub, errs)
		}
	case t.Kind() == reflect.Slice:
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			add("is not a JSON array", "")
			return
		}
		for i, el := range arr {
			checkValue(el, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
		}
	default:
		v := reflect.New(t)
		if err := json.Unmarshal(raw, v.Interface()); err != nil {
			switch {
			case t == timeType:
				add("is not an RFC 3339 time", `write it like "2026-01-15T09:00:00Z"`)
			case t == reflect.TypeFor[Duration]():
				add("is not a duration", `write it as a string like "10s" or "1m30s"`)
			default:
				add("is not a JSON "+jsonKind(t), "")
			}
		}
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	}
	return "value of the right type"
}

// jsonFields maps the JSON names of t's fields to the fields, in the
// encoding/json way (tag name, "-" skipped).
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField, t.NumField())
	for _, f := range reflect.VisibleFields(t) {
		if name, ok := jsonName(f); ok {
			m[name] = f
		}
	}
	return m
}

// jsonNames lists the JSON names of t's fields in declaration order.
func jsonNames(t reflect.Type) []string {
	var names []string
	for _, f := range reflect.VisibleFields(t) {
		if name, ok := jsonName(f); ok {
			names = append(names, name)
		}
	}
	return names
}

func jsonName(f reflect.StructField) (string, bool) {
	if !f.IsExported() || f.Anonymous {
		return "", false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, true
}

func unknownField(field, name string, t reflect.Type) error {
	known := jsonNames(t)
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	fix := "known fields: " + strings.Join(known, ", ")
	if best != "" {
		fix = fmt.Sprintf("did you mean %q?", best)
	}
	return &events.FieldError{Field: field, Problem: "is not a known field", Fix: fix}
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// characters each cost 1. Case differences count.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// d[i][j] is the distance between ra[:i] and rb[:j].
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
