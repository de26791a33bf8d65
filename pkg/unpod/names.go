package unpod

import (
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// field is a member of the envelope or of a call log that the decoder reads.
type field uint8

const (
	fieldUnknown field = iota
	fieldCount
	fieldStatusCode
	fieldMessage
	fieldData
	fieldID
	fieldSource
	fieldDestination
	fieldCallType
	fieldCallStatus
	fieldCreationTime
	fieldStartTime
	fieldEndTime
	fieldDuration
	fieldEndReason
)

func envelopeField(name string) field {
	switch name {
	case "count":
		return fieldCount
	case "status_code":
		return fieldStatusCode
	case "message":
		return fieldMessage
	case "data":
		return fieldData
	}
	return fieldUnknown
}

func recordField(name string) field {
	switch name {
	case "id":
		return fieldID
	case "source_number":
		return fieldSource
	case "destination_number":
		return fieldDestination
	case "call_type":
		return fieldCallType
	case "call_status":
		return fieldCallStatus
	case "creation_time":
		return fieldCreationTime
	case "start_time":
		return fieldStartTime
	case "end_time":
		return fieldEndTime
	case "call_duration":
		return fieldDuration
	case "end_reason":
		return fieldEndReason
	}
	return fieldUnknown
}

// matchName finds the field a member name (its JSON text, quotes included)
// stands for, as encoding/json matches names to struct fields: exactly, or
// else after unescaping and Unicode simple case folding, under which "ID",
// "Call_Status" and "ſtart_time" (long s) all match. byName knows the
// lower-case ASCII names.
func matchName(quoted string, escaped bool, byName func(string) field) field {
	name := quoted[1 : len(quoted)-1]
	if escaped {
		name = unquote(quoted)
	} else if f := byName(name); f != fieldUnknown || !mayFold(name) {
		return f
	}
	folded := make([]byte, 0, len(name))
	for i := 0; i < len(name); {
		if c := name[i]; c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			folded = append(folded, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(name[i:])
		r = foldRune(r)
		if r >= utf8.RuneSelf {
			return fieldUnknown // the known names are ASCII
		}
		folded = append(folded, byte(unicode.ToLower(r)))
		i += n
	}
	return byName(string(folded))
}

// unquote decodes a JSON string the scanner has checked; it is apart from
// matchName so that the common path does not pay for a heap variable.
func unquote(quoted string) string {
	var s string
	if json.Unmarshal([]byte(quoted), &s) != nil {
		return "" // cannot happen: the scanner checked the string
	}
	return s
}

// mayFold reports whether name has an upper-case ASCII letter or a
// non-ASCII byte, without which folding cannot change it.
func mayFold(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// foldRune returns the smallest rune of r's simple-fold orbit, as
// encoding/json folds names.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
