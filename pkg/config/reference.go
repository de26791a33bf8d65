package config

import (
	"fmt"
	"strings"
)

// Reference renders the configuration reference of src (a pointer to a
// struct holding the defaults) as a Markdown table: every option with its
// file key, environment variable, flag, default and meaning. It is generated
// from the code, so the document cannot drift from it.
func Reference(src any) (string, error) {
	var b strings.Builder
	b.WriteString("| file key | environment variable | flag | default | meaning |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	err := Walk(src, func(f Field) error {
		def := formatMasked(f)
		if strings.HasPrefix(def, "\n") {
			def = "(see the example file)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | `%s` | %s |\n",
			f.Path, code(f.Env), code(flagName(f.Flag)), strings.ReplaceAll(def, "|", `\|`), strings.ReplaceAll(f.Doc, "|", `\|`))
		return nil
	})
	return b.String(), err
}

func flagName(f string) string {
	if f == "" {
		return ""
	}
	return "--" + f
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}
