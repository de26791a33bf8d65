package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
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

// BenchmarkDecodeCall measures DecodeCall and DecodeCallInPlace beside the
// json.Unmarshal decoder they replaced (reference_test.go) and the JSON
// Schema validator, in one run, on the test event (small raw) and on one
// shaped like the simulator's (about 800 bytes). cpu-ns/op is the process's
// CPU time per decode, garbage collection included, which the shared
// machine's load skews less than ns/op:
//
//	go test -run '^$' -bench DecodeCall -benchmem ./schemas
func BenchmarkDecodeCall(b *testing.B) {
	v, err := NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	small := validCall()
	realistic := realisticCall()
	for _, ev := range []struct {
		name string
		e    *CallEvent
	}{{"small", &small}, {"realistic", &realistic}} {
		data, _ := json.Marshal(ev.e)
		for _, dec := range []struct {
			name string
			run  func([]byte) error
		}{
			{"single-pass", func(d []byte) error { _, err := v.DecodeCall(d); return err }},
			{"single-pass-in-place", func(d []byte) error { _, err := v.DecodeCallInPlace(d); return err }},
			{"reference", func(d []byte) error { _, err := refDecodeCall(d); return err }},
			{"jsonschema", v.ValidateCall},
		} {
			b.Run(fmt.Sprintf("%s-%dB/%s", ev.name, len(data), dec.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				defer reportCPU(b)()
				for b.Loop() {
					if err := dec.run(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// reportCPU adds the process's CPU time per iteration to a benchmark's
// figures. Use it as defer reportCPU(b)() before the loop.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDecodeCallJSONRules pins, edit by edit, how DecodeCall reads a
// document where the JSON Schema and encoding/json's struct decoding (the
// reference) can differ. DecodeCall must never accept what the schema
// refuses; where it refuses what the schema accepts, that is a documented
// strictness it kept from the reference (see DecodeCall).
func TestDecodeCallJSONRules(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	base := validCall()
	data, _ := json.Marshal(&base)
	tests := []struct {
		name             string
		old, new         string
		decode, schema   bool // accepted by DecodeCall, by ValidateCall
		reference        bool // accepted by the json.Unmarshal decoder
		wantOrg, wantErr string
	}{
		// Names match exactly, as in the schema; the reference folded case.
		{"upper-case name", `"org":`, `"ORG":`, false, false, true, "", "org: missing"},
		{"folded duplicate ignored", `"org":"unpod"`, `"org":"unpod","Org":"other"`, true, true, true, "unpod", ""},
		{"escaped name", `"org":`, `"\u006frg":`, true, true, true, "unpod", ""},
		{"long s is not s", `"source_number":`, `"ſource_number":`, false, false, true, "", "source_number: missing"},
		// The last duplicate counts wholly, as in the schema; the reference kept a type error.
		{"bad then good", `"org":"unpod"`, `"org":5,"org":"unpod"`, true, true, false, "unpod", ""},
		{"good then bad", `"org":"unpod"`, `"org":"unpod","org":5`, false, false, false, "", "org: want a string, got a number"},
		{"good then null", `"org":"unpod"`, `"org":"unpod","org":null`, false, false, false, "", "org: want a string, got null"},
		{"bad time then good", `"creation_time":"2026-02-07T05:57:00Z"`,
			`"creation_time":"yesterday","creation_time":"2026-02-07T05:57:00Z"`, true, true, false, "unpod", ""},
		{"last of two", `"org":"unpod"`, `"org":"first","org":"unpod"`, true, true, true, "unpod", ""},
		// Times: RFC 3339 as both the schema and time.Time read it.
		{"offset", `"2026-02-07T05:57:00Z"`, `"2026-02-07T11:27:00+05:30"`, true, true, true, "unpod", ""},
		{"nanoseconds", `"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00.123456789Z"`, true, true, true, "unpod", ""},
		{"comma fraction", `"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00,5Z"`, false, false, true, "", "creation_time:"},
		{"one-digit hour", `"2026-02-07T05:57:00Z"`, `"2026-02-07T5:57:00Z"`, false, false, true, "", "creation_time:"},
		{"offset hour 24", `"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00+24:00"`, false, false, true, "", "creation_time:"},
		{"offset minute 60", `"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00+05:60"`, false, false, true, "", "creation_time:"},
		// Stricter than the schema, as the reference was.
		{"lower-case t and z", `"2026-02-07T05:57:00Z"`, `"2026-02-07t05:57:00z"`, false, true, false, "", "creation_time:"},
		{"leap second", `"2026-02-07T05:57:00Z"`, `"2026-12-31T23:59:60Z"`, false, true, false, "", "creation_time:"},
		{"escaped time", `"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00\u005a"`, false, true, false, "", "creation_time:"},
		{"integer as 1.0", `"revision":1`, `"revision":1.0`, false, true, false, "", "revision:"},
		{"integer as 1e0", `"revision":1`, `"revision":1e0`, false, true, false, "", "revision:"},
		{"integer past int64", `"revision":1`, `"revision":9223372036854775808`, false, true, false, "", "revision:"},
		// Strings decode as encoding/json decodes them.
		{"escaped value", `"org":"unpod"`, `"org":"\u0075npod"`, true, true, true, "unpod", ""},
		{"invalid UTF-8", `"org":"unpod"`, "\"org\":\"un\xffpod\"", true, true, true, "un\uFFFDpod", ""},
		{"lone surrogate", `"org":"unpod"`, `"org":"\ud800"`, true, true, true, "\uFFFD", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(string(data), tt.old, tt.new, 1)
			if doc == string(data) {
				t.Fatalf("edit %q found nothing to replace", tt.old)
			}
			e, err := v.DecodeCall([]byte(doc))
			schemaErr := v.ValidateCall([]byte(doc))
			_, refErr := refDecodeCall([]byte(doc))
			if (err == nil) != tt.decode || (schemaErr == nil) != tt.schema || (refErr == nil) != tt.reference {
				t.Fatalf("DecodeCall %v, schema %v, reference %v; want accepted %v, %v, %v",
					err, schemaErr, refErr, tt.decode, tt.schema, tt.reference)
			}
			if err != nil && (!errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want ErrSchema naming %q", err, tt.wantErr)
			}
			if err == nil && e.Org != tt.wantOrg {
				t.Fatalf("org = %q, want %q", e.Org, tt.wantOrg)
			}
		})
	}
}

// TestDecodeCallErrors checks that each refusal says which class it is and
// names what was wrong (a nil class: no refusal).
func TestDecodeCallErrors(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	base := validCall()
	data, _ := json.Marshal(&base)
	doc := string(data)
	tests := []struct {
		name    string
		payload string
		class   error
		want    []string
	}{
		{"empty", ``, ErrNotJSON, []string{"not JSON: call event: invalid JSON at offset 0"}},
		{"truncated", doc[:len(doc)-1], ErrNotJSON, []string{"unexpected end of JSON input"}},
		{"trailing bytes", doc + "x", ErrNotJSON, []string{"want the end after the top-level value"}},
		{"bad JSON after a schema fault", strings.Replace(doc, `"org":"unpod"`, `"org":5`, 1) + "]", ErrNotJSON, nil},
		{"control character", strings.Replace(doc, `"unpod"`, "\"un\tpod\"", 1), ErrNotJSON, []string{"control character in string"}},
		{"no colon after a known name", strings.Replace(doc, `"org":`, `"org" `, 1), ErrNotJSON, []string{"':' after a member name"}},
		{"space before a colon", strings.Replace(doc, `"org":`, `"org" :`, 1), nil, nil},
		{"array", `[1,2]`, ErrSchema, []string{"schema violation: call event: want an object, got an array"}},
		{"null", `null`, ErrSchema, []string{"want an object, got null"}},
		{"empty object", `{}`, ErrSchema, []string{"event_id: missing", "org: missing", "raw: missing"}},
		{"several faults, in schema order", strings.NewReplacer(`"revision":1`, `"revision":0`, `"call_status":"completed"`,
			`"call_status":"no-answer"`, `"org":"unpod"`, `"org":""`).Replace(doc), ErrSchema,
			[]string{`org: empty; revision: below 1; call_status: "no-answer" is not completed, missed or failed`}},
		{"bad uuid", strings.Replace(doc, `"6ba7b810-`, `"6ba7b81z-`, 1), ErrSchema, []string{"event_id:", "is not a UUID"}},
		{"uuid too long", strings.Replace(doc, `"6ba7b810-`, `"6ba7b8100-`, 1), ErrSchema, []string{"event_id:", "is not a UUID"}},
		{"uuid with a trailing digit", strings.Replace(doc, `430c8"`, `430c80"`, 1), ErrSchema, []string{"is not a UUID"}},
		{"uuid dash misplaced", strings.Replace(doc, `"6ba7b810-9dad-`, `"6ba7b8109-dad-`, 1), ErrSchema, []string{"is not a UUID"}},
		{"raw not an object", strings.Replace(doc, `"raw":{"id":"call_abc","bridge":1}`, `"raw":"x"`, 1), ErrSchema,
			[]string{"raw: want an object, got a string"}},
		{"call_id wrong type", strings.Replace(doc, `"call_id":"call_abc"`, `"call_id":[]`, 1), ErrSchema,
			[]string{"call_id: want a string or null, got an array"}},
		{"bad time", strings.Replace(doc, `"2026-02-07T05:57:00Z"`, `"2026-02-30T05:57:00Z"`, 1), ErrSchema,
			[]string{`creation_time: "2026-02-30T05:57:00Z" is not an RFC 3339 time`}},
		{"negative duration", strings.Replace(doc, `"call_duration_seconds":207`, `"call_duration_seconds":-1`, 1), ErrSchema,
			[]string{"call_duration_seconds: negative"}},
		{"fraction", strings.Replace(doc, `"call_duration_seconds":207`, `"call_duration_seconds":2.5`, 1), ErrSchema,
			[]string{"call_duration_seconds: 2.5 is not an integer of 64 bits"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.DecodeCall([]byte(tt.payload))
			if tt.class == nil {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			other := ErrSchema
			if tt.class == ErrSchema {
				other = ErrNotJSON
			}
			if !errors.Is(err, tt.class) || errors.Is(err, other) {
				t.Fatalf("err = %v, want %v only", err, tt.class)
			}
			if tt.class == ErrNotJSON && json.Valid([]byte(tt.payload)) || tt.class == ErrSchema && !json.Valid([]byte(tt.payload)) {
				t.Fatalf("bad test case: json.Valid disagrees with %v", tt.class)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want mention of %q", err, w)
				}
			}
		})
	}
}

// TestDecodeCallRetention checks what DecodeCall's doc promises about
// memory: the event keeps nothing of data, and Raw can be written to and
// appended to without changing the event's strings.
func TestDecodeCallRetention(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	in := realisticCall()
	data, _ := json.Marshal(&in)
	e, err := v.DecodeCall(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = '#'
	}
	want := realisticCall()
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("reusing the payload changed the event:\n got %+v\nwant %+v", e, want)
	}
	if cap(e.Raw) != len(e.Raw) {
		t.Fatalf("Raw has capacity %d past its %d bytes: an append would write into the shared copy", cap(e.Raw), len(e.Raw))
	}
	_ = append(e.Raw, "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"...)
	for i := range e.Raw {
		e.Raw[i] = '#'
	}
	e.Raw = want.Raw
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("writing to Raw changed the event:\n got %+v\nwant %+v", e, want)
	}
}

// TestDecodeCallInPlaceAliases checks what DecodeCallInPlace's doc says: the
// event's strings and Raw lie in data, and the event is DecodeCall's.
func TestDecodeCallInPlaceAliases(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	in := realisticCall()
	data, _ := json.Marshal(&in)
	e, err := v.DecodeCallInPlace(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := realisticCall(); !reflect.DeepEqual(e, want) {
		t.Fatalf("event:\n got %+v\nwant %+v", e, want)
	}
	within := func(p *byte, n int) bool {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
		return uintptr(unsafe.Pointer(p)) >= start && uintptr(unsafe.Pointer(p))+uintptr(n) <= start+uintptr(len(data))
	}
	for name, s := range map[string]string{"org": e.Org, "call_key": e.CallKey, "call_id": *e.CallID, "end_reason": e.EndReason} {
		if !within(unsafe.StringData(s), len(s)) {
			t.Errorf("%s does not point into data", name)
		}
	}
	if !within(unsafe.SliceData(e.Raw), len(e.Raw)) || cap(e.Raw) != len(e.Raw) {
		t.Errorf("Raw does not point into data, or has capacity past its end")
	}
	// And DecodeCall's event points into no byte of data.
	c, err := v.DecodeCall(data)
	if err != nil {
		t.Fatal(err)
	}
	if within(unsafe.StringData(c.Org), len(c.Org)) || within(unsafe.SliceData(c.Raw), len(c.Raw)) {
		t.Errorf("DecodeCall's event points into data")
	}
}
