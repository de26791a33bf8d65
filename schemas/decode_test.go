package schemas

import (
	"encoding/json"
	"fmt"
	"testing"
)

// DecodeCall must give the same verdict as the JSON Schema on every input:
// each key deleted, set to null, and set to values of the wrong type, range
// or format.
func TestDecodeCallAgreesWithSchema(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	base := validCall()
	data, _ := json.Marshal(&base)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	values := []any{nil, "", "x", 0, -1, 1, 1.5, true, []any{}, map[string]any{}, "2026-02-07T05:57:00Z",
		"2026-02-07 05:57", "6ba7b810-9dad-51d1-80b4-00c04fd430c8", "6ba7b810-9dad-51d1-80b4-00c04fd430cz",
		"inbound", "outbound", "completed", "missed", "failed", "no-answer"}
	cases := 0
	check := func(name string, doc map[string]any) {
		t.Helper()
		cases++
		payload, _ := json.Marshal(doc)
		schemaErr := v.ValidateCall(payload)
		_, fastErr := v.DecodeCall(payload)
		if (schemaErr == nil) != (fastErr == nil) {
			t.Errorf("%s: schema says %v, DecodeCall says %v", name, schemaErr, fastErr)
		}
	}
	check("valid", m)
	for key := range m {
		doc := clone(m)
		delete(doc, key)
		check("without "+key, doc)
		for _, val := range values {
			doc := clone(m)
			doc[key] = val
			check(fmt.Sprintf("%s=%#v", key, val), doc)
		}
	}
	if cases < 300 {
		t.Fatalf("only %d cases ran", cases)
	}
	for _, in := range []string{"", "{", "[]", "null", `"x"`} {
		if _, err := v.DecodeCall([]byte(in)); err == nil {
			t.Errorf("DecodeCall(%q) succeeded", in)
		}
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func BenchmarkDecodeCall(b *testing.B) {
	v, err := NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	e := validCall()
	data, _ := json.Marshal(&e)
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.DecodeCall(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jsonschema", func(b *testing.B) {
		for b.Loop() {
			if err := v.ValidateCall(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
