// Package jsonscan reads JSON text in one pass without building values, for
// decoders that pick the members they need out of a document and must accept
// exactly the texts encoding/json accepts.
//
// A Scanner checks the same grammar as encoding/json: JSON whitespace,
// number syntax, string escapes, control characters in strings and a nesting
// depth of at most MaxDepth. Invalid UTF-8 inside strings is allowed, as it is
// there. A decoder drives the Scanner member by member; where it has no use
// for a value it calls Value, which checks and skips it. A text the Scanner
// accepts whole (down to End) is one json.Valid accepts, and the reverse;
// FuzzScanAgreesWithValid holds it to that.
//
// A typical object loop:
//
//	more, err := sc.Enter('{') // the '{' is at the offset
//	for err == nil && more {
//		var quoted string
//		if quoted, _, err = sc.Key(); err != nil {
//			break
//		}
//		sc.Space()
//		... read the value at sc.Offset(), or sc.Value() to skip it ...
//		more, err = sc.More('}')
//	}
//
// A decoder that expects members in a known order tries KeyIs with the
// next name before Key, which saves scanning the name.
package jsonscan

import (
	"fmt"
	"math/bits"
)

// MaxDepth is encoding/json's limit on nested arrays and objects; the
// Scanner enforces the same one so that it accepts exactly the texts
// json.Unmarshal accepts.
const MaxDepth = 10000

// Text is what a Scanner reads: a string or a byte slice. Over a string, the
// names and values a decoder slices out of the text are substrings of it,
// which costs no copy.
type Text interface{ ~string | ~[]byte }

// Scanner reads one JSON text. The zero value is not useful; use New. A
// Scanner is a small value: keep it on the stack and pass a pointer to it.
type Scanner[T Text] struct {
	src   T
	off   int // read offset into src
	depth int // open arrays and objects
}

// New returns a Scanner at the start of src.
func New[T Text](src T) Scanner[T] { return Scanner[T]{src: src} }

// Source returns the text being scanned, so that a caller can slice out what
// lies between two offsets.
func (sc *Scanner[T]) Source() T { return sc.src }

// Offset returns the read offset: the index in Source of the next byte to read.
func (sc *Scanner[T]) Offset() int { return sc.off }

// Depth returns the number of arrays and objects entered and not yet left.
func (sc *Scanner[T]) Depth() int { return sc.depth }

// SyntaxError is bad JSON at an offset of the scanned text.
type SyntaxError struct {
	Offset int    // where the scanner stopped
	Msg    string // what it wanted or found there
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.Offset, e.Msg)
}

// Fail returns a *SyntaxError at the read offset: "unexpected end of JSON
// input" at the end of the text, else msg and the byte found there. Decoders
// use it for texts that are JSON but not what they expect at the top level
// too ("want an object").
func (sc *Scanner[T]) Fail(msg string) error {
	if sc.off >= len(sc.src) {
		return &SyntaxError{Offset: sc.off, Msg: "unexpected end of JSON input"}
	}
	return &SyntaxError{Offset: sc.off, Msg: fmt.Sprintf("%s, found %q", msg, sc.src[sc.off])}
}

// Space skips JSON whitespace, which is narrower than Unicode's.
func (sc *Scanner[T]) Space() {
	// Most tokens follow one another without whitespace: one compare.
	if sc.off < len(sc.src) && sc.src[sc.off] > ' ' {
		return
	}
	for sc.off < len(sc.src) {
		switch sc.src[sc.off] {
		case ' ', '\t', '\n', '\r':
			sc.off++
		default:
			return
		}
	}
}

// Peek returns the byte at the read offset, or 0 at the end (never valid
// JSON there, so a caller that dispatches on it fails on it).
func (sc *Scanner[T]) Peek() byte {
	if sc.off < len(sc.src) {
		return sc.src[sc.off]
	}
	return 0
}

// Expect consumes the byte c after optional whitespace; what names it in
// the error when another byte is there.
func (sc *Scanner[T]) Expect(c byte, what string) error {
	sc.Space()
	if sc.Peek() != c {
		return sc.Fail("want " + what)
	}
	sc.off++
	return nil
}

// End checks that only whitespace is left after the top-level value.
func (sc *Scanner[T]) End() error {
	sc.Space()
	if sc.off != len(sc.src) {
		return &SyntaxError{Offset: sc.off, Msg: fmt.Sprintf("want the end after the top-level value, found %q", sc.src[sc.off])}
	}
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

// Flags describe the text of a string the Scanner consumed.
type Flags uint8

const (
	// Escaped marks a string with backslash escapes.
	Escaped Flags = 1 << iota
	// NonASCII marks a string with bytes of 0x80 and above outside
	// escapes: UTF-8, or invalid UTF-8, which encoding/json decodes as
	// U+FFFD.
	NonASCII
)

// Verbatim reports whether the text between the quotes is the string's
// value exactly as encoding/json decodes it: no escapes and ASCII only, so
// that a decoder can take it as it is.
func (f Flags) Verbatim() bool { return f == 0 }

// Quoted consumes the string whose opening quote is at the read offset and
// reports its Flags.
func (sc *Scanner[T]) Quoted() (Flags, error) {
	var flags Flags
	var seen uint64 // the bytes read, OR'ed together, for NonASCII
	s, i := sc.src, sc.off+1
	for {
		// Eight bytes at a time to the first byte that needs a closer look
		// (most of a document's bytes are in strings), then byte by byte
		// near the end of the text.
		for i+8 <= len(s) {
			b := s[i : i+8]
			w := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
				uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
			if m := special(w); m != 0 {
				n := bits.TrailingZeros64(m) / 8
				seen |= w & (1<<(8*n) - 1)
				i += n
				break
			}
			seen |= w
			i += 8
		}
		for i < len(s) && strPlain[s[i]] {
			seen |= uint64(s[i])
			i++
		}
		if i >= len(s) {
			sc.off = i
			return 0, sc.Fail("")
		}
		switch s[i] {
		case '"':
			sc.off = i + 1
			if seen&0x8080808080808080 != 0 {
				flags |= NonASCII
			}
			return flags, nil
		case '\\':
			flags |= Escaped
			if i+1 >= len(s) {
				sc.off = len(s)
				return 0, sc.Fail("")
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(s) || !isHex(s[k]) {
						sc.off = min(k, len(s))
						return 0, sc.Fail("invalid \\u escape")
					}
				}
				i += 6
			default:
				sc.off = i + 1
				return 0, sc.Fail("invalid escape")
			}
		default:
			sc.off = i
			return 0, sc.Fail("control character in string")
		}
	}
}

// special flags, with the high bit of a byte, the bytes of w that are a
// quote, a backslash or a control character. It flags no byte below the
// first such byte (a borrow only carries upwards), so the lowest flag marks
// the first byte that needs a closer look; flags above it mean nothing.
func special(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := w ^ (ones * '"')
	b := w ^ (ones * '\\')
	return ((q-ones)&^q | (b-ones)&^b | (w-ones*0x20)&^w) & highs
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Number consumes the number at the read offset:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (sc *Scanner[T]) Number() error {
	s, i := sc.src, sc.off
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
		sc.off = i
		return sc.Fail("want a digit")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			sc.off = i
			return sc.Fail("want a digit after the decimal point")
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
			sc.off = i
			return sc.Fail("want a digit in the exponent")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	sc.off = i
	return nil
}

// Literal consumes the literal word (true, false or null) at the read offset.
func (sc *Scanner[T]) Literal(word string) error {
	for k := 0; k < len(word); k++ {
		if sc.off >= len(sc.src) || sc.src[sc.off] != word[k] {
			return sc.Fail("invalid literal")
		}
		sc.off++
	}
	return nil
}

// Value consumes one value of any type, after optional whitespace.
func (sc *Scanner[T]) Value() error {
	sc.Space()
	switch c := sc.Peek(); {
	case c == '"':
		_, err := sc.Quoted()
		return err
	case c == '{':
		return sc.container('{', '}')
	case c == '[':
		return sc.container('[', ']')
	case c == 't':
		return sc.Literal("true")
	case c == 'f':
		return sc.Literal("false")
	case c == 'n':
		return sc.Literal("null")
	case c == '-' || isDigit(c):
		return sc.Number()
	}
	return sc.Fail("want a value")
}

// container consumes the object or array whose opening bracket is at the
// read offset.
func (sc *Scanner[T]) container(open, closing byte) error {
	more, err := sc.Enter(open)
	for err == nil && more {
		if open == '{' {
			if _, _, err = sc.Key(); err != nil {
				return err
			}
		}
		if err = sc.Value(); err != nil {
			return err
		}
		more, err = sc.More(closing)
	}
	return err
}

// Enter consumes the opening bracket open ('{' or '[') at the read offset,
// counting depth as encoding/json does, and reports whether a member or
// element follows; for an empty object or array it consumes the closing
// bracket too and reports false.
func (sc *Scanner[T]) Enter(open byte) (more bool, err error) {
	if sc.Peek() != open {
		return false, sc.Fail("want '" + string(open) + "'")
	}
	sc.depth++
	if sc.depth > MaxDepth {
		return false, sc.Fail("exceeded max depth")
	}
	sc.off++
	sc.Space()
	if c := sc.Peek(); c == '}' && open == '{' || c == ']' && open == '[' {
		sc.off++
		sc.depth--
		return false, nil
	}
	return true, nil
}

// More consumes the separator after a member or element: it reports true
// after a comma, and false after the closing bracket, which leaves the
// object or array.
func (sc *Scanner[T]) More(closing byte) (bool, error) {
	sc.Space()
	switch sc.Peek() {
	case ',':
		sc.off++
		return true, nil
	case closing:
		sc.off++
		sc.depth--
		return false, nil
	}
	return false, sc.Fail("want ',' or '" + string(closing) + "'")
}

// KeyIs consumes the member name quoted and the colon right after it, if
// the text at the read offset (after optional whitespace) starts with
// exactly them, and reports whether it did; else it consumes nothing more.
// quoted is a name's JSON text, quotes included, with no escapes or control
// characters (`"id"`): a decoder that expects members in a known order
// tries the next one's name this way before calling Key, which saves
// scanning it.
func (sc *Scanner[T]) KeyIs(quoted string) bool {
	sc.Space()
	end := sc.off + len(quoted)
	if end < len(sc.src) && sc.src[end] == ':' && string(sc.src[sc.off:end]) == quoted {
		sc.off = end + 1
		return true
	}
	return false
}

// Key consumes a member name and its colon, after optional whitespace. It
// returns the name's JSON text, quotes included, and its Flags; for a
// Verbatim name, quoted[1:len(quoted)-1] is the name.
func (sc *Scanner[T]) Key() (quoted T, flags Flags, err error) {
	sc.Space()
	if sc.Peek() != '"' {
		return quoted, 0, sc.Fail("want a member name")
	}
	start := sc.off
	if flags, err = sc.Quoted(); err != nil {
		return quoted, 0, err
	}
	quoted = sc.src[start:sc.off]
	if sc.off < len(sc.src) && sc.src[sc.off] == ':' {
		sc.off++ // the usual case, without a call
		return quoted, flags, nil
	}
	return quoted, flags, sc.Expect(':', "':' after a member name")
}
