package unpod

import "fmt"

// maxNestingDepth is encoding/json's limit on nested arrays and objects;
// the scanner enforces the same one so that it accepts exactly the texts
// json.Unmarshal accepts.
const maxNestingDepth = 10000

// scanner reads JSON text in one pass without building values. It checks the
// same grammar as encoding/json (whitespace, number syntax, string escapes,
// control characters, nesting depth; invalid UTF-8 inside strings is
// allowed, as there), so a page it accepts is one json.Unmarshal would
// accept, and the reverse.
type scanner struct {
	s     string
	i     int // read offset into s
	depth int // open arrays and objects
}

// syntaxError is bad JSON at an offset of the scanned text.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.off, e.msg)
}

func (sc *scanner) fail(msg string) error {
	if sc.i >= len(sc.s) {
		return &syntaxError{off: sc.i, msg: "unexpected end of JSON input"}
	}
	return &syntaxError{off: sc.i, msg: fmt.Sprintf("%s, found %q", msg, sc.s[sc.i])}
}

// ws skips JSON whitespace, which is narrower than Unicode's.
func (sc *scanner) ws() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// peek returns the byte at the read offset, 0 at the end (never valid JSON
// there, so callers fail on it).
func (sc *scanner) peek() byte {
	if sc.i < len(sc.s) {
		return sc.s[sc.i]
	}
	return 0
}

// expect consumes c after optional whitespace.
func (sc *scanner) expect(c byte, what string) error {
	sc.ws()
	if sc.peek() != c {
		return sc.fail("want " + what)
	}
	sc.i++
	return nil
}

// strPlain marks the bytes a string can hold without a closer look: not the
// quote, the backslash or a control character.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str consumes the string starting at the read offset (which holds its
// opening quote) and reports whether it has escapes.
func (sc *scanner) str() (escaped bool, err error) {
	s, i := sc.s, sc.i+1
	for {
		for i < len(s) && strPlain[s[i]] {
			i++
		}
		if i >= len(s) {
			sc.i = i
			return false, sc.fail("")
		}
		switch s[i] {
		case '"':
			sc.i = i + 1
			return escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(s) {
				sc.i = len(s)
				return false, sc.fail("")
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(s) || !isHex(s[k]) {
						sc.i = min(k, len(s))
						return false, sc.fail("invalid \\u escape")
					}
				}
				i += 6
			default:
				sc.i = i + 1
				return false, sc.fail("invalid escape")
			}
		default:
			sc.i = i
			return false, sc.fail("control character in string")
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// num consumes a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (sc *scanner) num() error {
	s, i := sc.s, sc.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && isDigit(s[i]):
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		sc.i = i
		return sc.fail("want a digit")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			sc.i = i
			return sc.fail("want a digit after the decimal point")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			sc.i = i
			return sc.fail("want a digit in the exponent")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	sc.i = i
	return nil
}

// lit consumes the literal word (true, false or null).
func (sc *scanner) lit(word string) error {
	for k := 0; k < len(word); k++ {
		if sc.i >= len(sc.s) || sc.s[sc.i] != word[k] {
			return sc.fail("invalid literal")
		}
		sc.i++
	}
	return nil
}

// value consumes one value of any type, after optional whitespace.
func (sc *scanner) value() error {
	sc.ws()
	switch c := sc.peek(); {
	case c == '"':
		_, err := sc.str()
		return err
	case c == '{':
		return sc.object()
	case c == '[':
		return sc.array()
	case c == 't':
		return sc.lit("true")
	case c == 'f':
		return sc.lit("false")
	case c == 'n':
		return sc.lit("null")
	case c == '-' || isDigit(c):
		return sc.num()
	}
	return sc.fail("want a value")
}

// open consumes an opening bracket, counting depth as encoding/json does.
func (sc *scanner) open() error {
	sc.depth++
	if sc.depth > maxNestingDepth {
		return sc.fail("exceeded max depth")
	}
	sc.i++
	return nil
}

// more consumes the separator after an element or member: true after a
// comma, false after the closing bracket.
func (sc *scanner) more(closing byte) (bool, error) {
	sc.ws()
	switch sc.peek() {
	case ',':
		sc.i++
		return true, nil
	case closing:
		sc.i++
		sc.depth--
		return false, nil
	}
	return false, sc.fail("want ',' or '" + string(closing) + "'")
}

// object consumes an object whose opening brace is at the read offset.
func (sc *scanner) object() error {
	if err := sc.open(); err != nil {
		return err
	}
	sc.ws()
	if sc.peek() == '}' {
		sc.i++
		sc.depth--
		return nil
	}
	for {
		if _, _, err := sc.key(); err != nil {
			return err
		}
		if err := sc.value(); err != nil {
			return err
		}
		if more, err := sc.more('}'); err != nil || !more {
			return err
		}
	}
}

// key consumes a member name and its colon; it returns the name's JSON
// text, quotes included, and whether it has escapes.
func (sc *scanner) key() (name string, escaped bool, err error) {
	sc.ws()
	if sc.peek() != '"' {
		return "", false, sc.fail("want a member name")
	}
	start := sc.i
	if escaped, err = sc.str(); err != nil {
		return "", false, err
	}
	name = sc.s[start:sc.i]
	return name, escaped, sc.expect(':', "':' after a member name")
}

// array consumes an array whose opening bracket is at the read offset.
func (sc *scanner) array() error {
	if err := sc.open(); err != nil {
		return err
	}
	sc.ws()
	if sc.peek() == ']' {
		sc.i++
		sc.depth--
		return nil
	}
	for {
		if err := sc.value(); err != nil {
			return err
		}
		if more, err := sc.more(']'); err != nil || !more {
			return err
		}
	}
}
