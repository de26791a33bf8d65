package unpod

import (
	"bytes"
	"encoding/base64"
	"unicode/utf8"
)

// Records are sanitised at the edge, so that every sink takes them: JSON
// allows what PostgreSQL refuses in text and jsonb (invalid UTF-8 inside a
// string, the escape \u0000 and an unpaired surrogate escape such as
// \ud800), and one such byte would cost the row.
//
// A record holding any of them is decoded as usual, and then:
//   - every string field (id, numbers, call_type, call_status, end_reason)
//     has each invalid byte and each NUL replaced by U+FFFD, as
//     encoding/json does for invalid bytes;
//   - Raw is the record's JSON with the same replacement (invalid bytes
//     become U+FFFD, \u0000 and unpaired surrogate escapes become \ufffd),
//     and one member added at the end, RawBase64Member, whose value is the
//     record's original bytes in standard base64 (RFC 4648 section 4, with
//     padding). Raw stays a JSON object holding every field, and the
//     original is kept byte for byte.
//
// A clean record (nearly all of them) is left exactly as received.

// RawBase64Member is the member added to Record.Raw when the record had to
// be sanitised: the original bytes, base64-encoded.
const RawBase64Member = "_callstream_raw_base64"

// needsCleaning reports whether raw holds invalid UTF-8 or an escape that
// PostgreSQL refuses. It may say yes for a clean record (an escaped
// surrogate pair, or "\\u0000" text); cleanRaw then changes nothing.
func needsCleaning(raw []byte) bool {
	if !utf8.Valid(raw) {
		return true
	}
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte(`\u`))
		if j < 0 || i+j+6 > len(raw) {
			return false
		}
		i += j + 2
		if v, ok := hex4(raw[i : i+4]); ok && (v == 0 || v >= 0xD800 && v <= 0xDFFF) {
			return true
		}
	}
}

func hex4(b []byte) (rune, bool) {
	var v rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// cleanRaw returns raw (a JSON value the scanner accepted) with invalid
// UTF-8 replaced by U+FFFD and \u0000 and unpaired surrogate escapes by
// \ufffd, and whether it changed anything.
func cleanRaw(raw []byte) ([]byte, bool) {
	out := make([]byte, 0, len(raw)+8)
	changed, inString := false, false
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case !inString:
			inString = c == '"'
			out = append(out, c)
			i++
		case c == '"':
			inString = false
			out = append(out, c)
			i++
		case c == '\\' && i+6 <= len(raw) && raw[i+1] == 'u':
			v, _ := hex4(raw[i+2 : i+6])
			switch {
			case v == 0 || v >= 0xDC00 && v <= 0xDFFF:
				out, changed, i = append(out, `\ufffd`...), true, i+6
			case v >= 0xD800 && v <= 0xDBFF:
				if i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					if w, ok := hex4(raw[i+8 : i+12]); ok && w >= 0xDC00 && w <= 0xDFFF {
						out, i = append(out, raw[i:i+12]...), i+12
						continue
					}
				}
				out, changed, i = append(out, `\ufffd`...), true, i+6
			default:
				out, i = append(out, raw[i:i+6]...), i+6
			}
		case c == '\\':
			n := min(i+2, len(raw))
			out, i = append(out, raw[i:n]...), n
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && n == 1 {
				out, changed = append(out, "\uFFFD"...), true
			} else {
				out = append(out, raw[i:i+n]...)
			}
			i += n
		}
	}
	return out, changed
}

// cleanString replaces each invalid byte and each NUL of s with U+FFFD.
func cleanString(s string) string {
	if utf8.ValidString(s) && !bytes.Contains([]byte(s), []byte{0}) {
		return s
	}
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == 0 || r == utf8.RuneError && n == 1 {
			out = append(out, "\uFFFD"...)
		} else {
			out = append(out, s[i:i+n]...)
		}
		i += n
	}
	return string(out)
}

// sanitize applies the rules above to a decoded record whose Raw is its
// original JSON object.
func sanitize(rec *Record) {
	if !needsCleaning(rec.Raw) {
		return
	}
	cleaned, changed := cleanRaw(rec.Raw)
	if !changed {
		return
	}
	for _, s := range []*string{&rec.ID, &rec.SourceNumber, &rec.DestinationNumber, &rec.CallType, &rec.RawStatus, &rec.EndReason} {
		*s = cleanString(*s)
	}
	// The object's closing brace is its last byte: the member goes before it.
	end := bytes.LastIndexByte(cleaned, '}')
	enc := base64.StdEncoding
	out := make([]byte, 0, len(cleaned)+len(RawBase64Member)+enc.EncodedLen(len(rec.Raw))+8)
	out = append(out, cleaned[:end]...)
	out = append(out, `,"`+RawBase64Member+`":"`...)
	out = enc.AppendEncode(out, rec.Raw)
	out = append(out, `"}`...)
	rec.Raw = out
}
