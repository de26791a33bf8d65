package jsonscan_test

import (
	"fmt"

	"github.com/callstream/callstream/pkg/jsonscan"
)

// A decoder that wants one member of an object: the rest is checked and
// skipped, and the value is a substring of the text, without a copy.
func Example() {
	text := `{"id": "call_1", "tags": ["a", {"b": null}], "status": "completed"}`
	sc := jsonscan.New(text)
	var status string
	more, err := sc.Enter('{')
	for err == nil && more {
		var quoted string
		var flags jsonscan.Flags
		if quoted, flags, err = sc.Key(); err != nil {
			break
		}
		sc.Space()
		start := sc.Offset()
		if err = sc.Value(); err != nil {
			break
		}
		if quoted == `"status"` && flags.Verbatim() && text[start] == '"' {
			status = text[start+1 : sc.Offset()-1]
		}
		more, err = sc.More('}')
	}
	if err == nil {
		err = sc.End()
	}
	fmt.Println(status, err)
	// Output: completed <nil>
}
