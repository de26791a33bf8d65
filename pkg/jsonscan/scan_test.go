package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scanAll reports whether the Scanner accepts text as one JSON document.
func scanAll[T Text](text T) error {
	sc := New(text)
	if err := sc.Value(); err != nil {
		return err
	}
	if err := sc.End(); err != nil {
		return err
	}
	if sc.Depth() != 0 {
		return errors.New("depth not back to 0")
	}
	return nil
}

// validitySeeds are texts where a hand-written scanner could plausibly part
// from encoding/json (they started as pkg/unpod's differential seeds):
// whitespace, number syntax, escapes, control characters, invalid UTF-8,
// depth, trailing bytes.
var validitySeeds = []struct {
	text  string
	valid bool
}{
	{`{"count":1,"data":[{"call_status":"completed","call_duration":207}]}`, true},
	{"\t\r\n {\"a\" : 1 , \"b\" : [ { \"c\" : \"d\" } ] } \n", true},
	{`{"a":-0,"b":-0.0e+0,"c":1E5,"d":0.5,"e":1e-3,"f":123456789012345678901234567890}`, true},
	{`{"a":01}`, false},
	{`{"a":1.}`, false},
	{`{"a":.5}`, false},
	{`{"a":1e}`, false},
	{`{"a":1e+}`, false},
	{`{"a":-}`, false},
	{`{"a":+1}`, false},
	{`{"a":NaN}`, false},
	{`{"a":"\u0063\ud83d\ude00\u00e9\/\b\f\n\r\t\"\\"}`, true},
	{`{"a":"\ud800"}`, true}, // a lone surrogate is valid JSON (decoded as U+FFFD)
	{`{"a":"\x"}`, false},
	{`{"a":"\u12"}`, false},
	{`{"a":"\u12g4"}`, false},
	{`{"a":"` + "\xff\xfe" + `"}`, true},
	{`{"a":"` + "\t" + `"}`, false},
	{`{"a":"` + "\x7f" + `"}`, true},
	// The same faults in strings long enough for the eight-byte loop.
	{`{"a":"0123456789abcdef` + "\x01" + `0123456789abcdef"}`, false},
	{`{"a":"0123456789abcdef` + "\x1f" + `0123456789abcdef"}`, false},
	{`{"a":"0123456789abcdef` + "\x7f\x80\xff " + `0123456789abcdef"}`, true},
	{`{"a":"0123456789abcdef\q0123456789abcdef"}`, false},
	{`{"a":"0123456789abcdef\"0123456789abcdef"}`, true},
	{`{"a":"0123456789abcdef\u00e90123456789abcdef"}`, true},
	{`{"0123456789abcdef` + "\n" + `0123456789abcdef":1}`, false},
	{`{"a":"unterminated}`, false},
	{`{"a":"x\`, false},
	{`{"a":[1,]}`, false},
	{`{"a":[,1]}`, false},
	{`{"a":1,}`, false},
	{`{,"a":1}`, false},
	{`{"a" 1}`, false},
	{`{a:1}`, false},
	{`{"a":tru}`, false},
	{`{"a":nul}`, false},
	{`{"a":true,"b":false,"c":null}`, true},
	{`{"a":{"b":{"c":[[],{},[{}]]}}}`, true},
	{strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), true},
	{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), false},
	{strings.Repeat(`{"a":`, MaxDepth) + "1" + strings.Repeat("}", MaxDepth), true},
	{strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1), false},
	{`{"a":1}x`, false},
	{`{"a":1} {"a":1}`, false},
	{`{"a":1} `, true},
	{`null`, true}, {`[]`, true}, {`"x"`, true}, {`0`, true}, {` true `, true},
	{``, false}, {` `, false}, {`{`, false}, {`}`, false}, {`[`, false}, {`{"a":1`, false}, {`{"a"`, false},
	{`<html>502</html>`, false},
	{"\xef\xbb\xbf{}", false}, // a byte order mark is not JSON whitespace
	{"\u00a0{}", false},       // nor is a no-break space
}

func TestScanValidity(t *testing.T) {
	for _, tt := range validitySeeds {
		if json.Valid([]byte(tt.text)) != tt.valid {
			t.Fatalf("bad test case: json.Valid(%.60q) = %v", tt.text, !tt.valid)
		}
		for name, err := range map[string]error{"string": scanAll(tt.text), "[]byte": scanAll([]byte(tt.text))} {
			if (err == nil) != tt.valid {
				t.Errorf("%s %.60q: err = %v, want valid = %v", name, tt.text, err, tt.valid)
			}
			var se *SyntaxError
			if err != nil && !errors.As(err, &se) {
				t.Errorf("%s %.60q: err %T is not a *SyntaxError", name, tt.text, err)
			}
		}
	}
}

// FuzzScanAgreesWithValid holds the Scanner, over a string and over a byte
// slice, to json.Valid: the same verdict on every text. Run longer with
//
//	go test -run '^$' -fuzz FuzzScanAgreesWithValid -fuzztime 60s ./pkg/jsonscan
func FuzzScanAgreesWithValid(f *testing.F) {
	for _, s := range validitySeeds {
		// The nesting-limit texts (20 kB each) stay with TestScanValidity:
		// as seeds, the fuzzer spends its time growing them.
		if len(s.text) <= 1024 {
			f.Add([]byte(s.text))
		}
	}
	for _, s := range []string{`"abcdefgh\u00e9ijklmnop"`, "\"abcdefg\xffhijkl\"x", `"abcdefghijklmnop"é`, `"é\n"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		want := json.Valid(text)
		if err := scanAll(string(text)); (err == nil) != want {
			t.Fatalf("string: err = %v, json.Valid = %v", err, want)
		}
		if err := scanAll(text); (err == nil) != want {
			t.Fatalf("[]byte: err = %v, json.Valid = %v", err, want)
		}
		// A leading string's Flags say what its bytes hold.
		if sc := New(text); sc.Peek() == '"' {
			if flags, err := sc.Quoted(); err == nil {
				content := text[1 : sc.Offset()-1]
				esc := bytes.IndexByte(content, '\\') >= 0
				high := bytes.IndexFunc(content, func(r rune) bool { return r >= 0x80 }) >= 0
				if flags&Escaped != 0 != esc || flags&NonASCII != 0 != high {
					t.Fatalf("Quoted(%q) flags %b; escapes %v, non-ASCII %v", text[:sc.Offset()], flags, esc, high)
				}
			}
		}
	})
}

// members walks the top-level object of text with the driving API and
// returns each member's name (unescaped by encoding/json when escaped) and
// value text, the way a decoder uses the Scanner.
func members[T Text](text T) (names []string, values []string, escapedNames []bool, err error) {
	sc := New(text)
	sc.Space()
	more, err := sc.Enter('{')
	for err == nil && more {
		var quoted T
		var flags Flags
		if quoted, flags, err = sc.Key(); err != nil {
			break
		}
		escaped := flags&Escaped != 0
		name := string(quoted[1 : len(quoted)-1])
		if escaped {
			if err = json.Unmarshal([]byte(string(quoted)), &name); err != nil {
				break
			}
		}
		sc.Space()
		start := sc.Offset()
		if err = sc.Value(); err != nil {
			break
		}
		names = append(names, name)
		values = append(values, string(sc.Source()[start:sc.Offset()]))
		escapedNames = append(escapedNames, escaped)
		more, err = sc.More('}')
	}
	if err == nil {
		err = sc.End()
	}
	return names, values, escapedNames, err
}

func TestScanMembers(t *testing.T) {
	text := ` { "a" : 1 , "b\u0063" :"x\"y", "c":{"d":[1, {"e":null}]} ,"":[] , "\u00e9\t":-1.5e3 } `
	wantNames := []string{"a", "bc", "c", "", "é\t"}
	wantEscaped := []bool{false, true, false, false, true}
	// The value texts are what encoding/json hands a json.RawMessage.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatal(err)
	}
	check := func(kind string, names, values []string, escaped []bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if strings.Join(names, "|") != strings.Join(wantNames, "|") {
			t.Fatalf("%s: names %q, want %q", kind, names, wantNames)
		}
		for i, name := range names {
			if values[i] != string(raw[name]) || escaped[i] != wantEscaped[i] {
				t.Errorf("%s: member %q = %q (escaped %v), want %q (escaped %v)", kind, name, values[i], escaped[i], raw[name], wantEscaped[i])
			}
		}
	}
	n, v, e, err := members(text)
	check("string", n, v, e, err)
	n, v, e, err = members([]byte(text))
	check("[]byte", n, v, e, err)
}

func TestScanEmptyContainers(t *testing.T) {
	for _, tt := range []struct {
		text string
		open byte
		more bool
	}{
		{"{}", '{', false}, {"{ \n}", '{', false}, {`{"a":1}`, '{', true},
		{"[]", '[', false}, {"[ ]", '[', false}, {"[1]", '[', true},
	} {
		sc := New(tt.text)
		more, err := sc.Enter(tt.open)
		if err != nil || more != tt.more {
			t.Errorf("Enter on %q = %v, %v; want %v", tt.text, more, err, tt.more)
		}
		if want := 1; !tt.more {
			want = 0
			if sc.Offset() != len(tt.text) || sc.Depth() != want {
				t.Errorf("Enter on %q left offset %d depth %d", tt.text, sc.Offset(), sc.Depth())
			}
		} else if sc.Depth() != want {
			t.Errorf("Enter on %q: depth %d", tt.text, sc.Depth())
		}
	}
	sc := New("[1]")
	if _, err := sc.Enter('{'); err == nil {
		t.Error(`Enter('{') on "[1]" succeeded`)
	}
}

func TestScanKeyIs(t *testing.T) {
	for _, tt := range []struct {
		text, quoted string
		match        bool
		off          int // the offset after KeyIs: past the colon, or unmoved
	}{
		{`"id":1`, `"id"`, true, 5},
		{` "id":1`, `"id"`, true, 6},
		{` "ID":1`, `"id"`, false, 1}, // whitespace is skipped either way
		{`"id" :1`, `"id"`, false, 0}, // valid, but for Key to read
		{`"id"1`, `"id"`, false, 0},
		{`"id"`, `"id"`, false, 0},
		{`"idx":1`, `"id"`, false, 0},
		{`"i":1`, `"id"`, false, 0},
		{`"ID":1`, `"id"`, false, 0},
		{`"\u0069d":1`, `"id"`, false, 0},
	} {
		for _, kind := range []string{"string", "[]byte"} {
			var match bool
			var off int
			if kind == "string" {
				sc := New(tt.text)
				match, off = sc.KeyIs(tt.quoted), sc.Offset()
			} else {
				sc := New([]byte(tt.text))
				match, off = sc.KeyIs(tt.quoted), sc.Offset()
			}
			if match != tt.match || off != tt.off {
				t.Errorf("%s: KeyIs(%q) on %q = %v at %d, want %v at %d", kind, tt.quoted, tt.text, match, off, tt.match, tt.off)
			}
		}
	}
}

func TestScanSyntaxErrorOffset(t *testing.T) {
	for _, tt := range []struct {
		text string
		off  int
		msg  string
	}{
		{`{"a":01}`, 6, `want ',' or '}', found '1'`},
		{`{"a":"` + "\n" + `"}`, 6, "control character in string"},
		{`{"a":1`, 6, "unexpected end of JSON input"},
		{`{"a":1} x`, 8, "want the end after the top-level value"},
		{`{"a":"\q"}`, 7, "invalid escape"},
	} {
		err := scanAll(tt.text)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != tt.off || !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("%q: err = %v, want offset %d and %q", tt.text, err, tt.off, tt.msg)
		}
	}
}

func TestScanQuotedFlags(t *testing.T) {
	for _, tt := range []struct {
		text  string
		flags Flags
	}{
		{`"plain"`, 0}, {`""`, 0}, {`"a\nb"`, Escaped}, {`"\u0041"`, Escaped}, {`"\/"`, Escaped},
		{"\"\xff\"", NonASCII}, {`"é"`, NonASCII}, {`"\u00e9é"`, Escaped | NonASCII},
		// The eight-byte loop must not count bytes after the closing quote.
		{`"abc"` + "\xff\xff\xff\xff\xff\xff", 0}, {`"abcdefghijklmno"` + "é", 0},
		{`"abcdefghé"`, NonASCII}, {`"abcdefghijklmnoé"`, NonASCII}, {`"abcdefg` + "\x80" + `hijk"`, NonASCII},
	} {
		sc := New([]byte(tt.text))
		flags, err := sc.Quoted()
		end := strings.LastIndexByte(tt.text, '"') + 1
		if err != nil || flags != tt.flags || sc.Offset() != end {
			t.Errorf("Quoted(%q) = %b, %v at %d; want %b at %d", tt.text, flags, err, sc.Offset(), tt.flags, end)
		}
		if want := tt.flags == 0; flags.Verbatim() != want {
			t.Errorf("Quoted(%q).Verbatim() = %v", tt.text, !want)
		}
	}
}

// BenchmarkScan compares the Scanner with json.Valid on a call event
// sized document, in the same run:
//
//	go test -run '^$' -bench Scan -benchmem ./pkg/jsonscan
func BenchmarkScan(b *testing.B) {
	doc := []byte(`{"event_id":"6ba7b810-9dad-51d1-80b4-00c04fd430c8","org":"unpod","call_key":"call_abc","revision":1,` +
		`"call_id":"call_abc","source_number":"+911234567890","destination_number":"+919876543210","call_type":"inbound",` +
		`"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","start_time":"2026-02-07T05:57:10Z","end_time":null,` +
		`"call_duration_seconds":207,"end_reason":"caller_hangup","observed_at":"2026-02-07T06:57:10.123456789Z",` +
		`"raw":{"id":"call_abc","source_number":"+911234567890","destination_number":"+919876543210","call_type":"inbound",` +
		`"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":"0:03:27","end_reason":"caller_hangup",` +
		`"bridge":1,"metadata":{"campaign":"sim-1","tags":["simulated"]}}}`)
	s := string(doc)
	b.Run("jsonscan-string", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if err := scanAll(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jsonscan-bytes", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if err := scanAll(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if !json.Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
}

// reportCPU adds the process's CPU time per iteration to a benchmark's
// figures: on a shared machine, wall time per op swings with the load while
// CPU time moves much less. Call it as defer reportCPU(b)() before the loop.
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
