// Package config loads a component's configuration in one fixed order:
// defaults already in the struct, then a YAML file, then environment
// variables, then command-line flags. Each layer overrides the one before.
//
// Fields are described by struct tags:
//
//	yaml:"poll_interval"            the key in the YAML file
//	env:"CALLSTREAM_POLL_INTERVAL"  the environment variable that overrides it
//	flag:"poll-interval"            the command-line flag that overrides it
//	doc:"How often to poll."        one sentence for the configuration reference
//	secret:"true"                   masked by Print, Reference and in errors
//	secret:"url"                    a URL shown with MaskURL: its credentials
//	                                and token-like query values masked, its
//	                                scheme, host and path kept
//
// Secret tags apply at any depth, inside lists and maps of structs too. A
// map of strings tagged secret:"true" is printed with its keys and masked
// values (header names stay visible, their values do not).
//
// Supported field types: string, bool, the int and uint kinds, float64,
// time.Duration, time.Time (RFC 3339), []string and []time.Duration
// (comma-separated in env and flags), nested structs, and maps and slices of
// structs (YAML only). Unknown YAML keys are an error naming the key.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// LoadFile decodes the YAML file at path into dst (a pointer to a struct),
// keeping the values already in dst where the file says nothing. An empty
// path does nothing. Unknown keys are an error.
func LoadFile(path string, dst any) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	return LoadYAML(path, data, dst)
}

// LoadYAML decodes YAML bytes into dst; name labels errors.
func LoadYAML(name string, data []byte, dst any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("config: %s: %w", name, err)
	}
	return nil
}

// ApplyEnv sets every field that has an env tag and whose variable is set
// according to lookup (os.LookupEnv when nil).
func ApplyEnv(dst any, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return Walk(dst, func(f Field) error {
		if f.Env == "" {
			return nil
		}
		raw, ok := lookup(f.Env)
		if !ok {
			return nil
		}
		if err := setString(f.Value, raw); err != nil {
			return fmt.Errorf("config: environment variable %s: %w", f.Env, maskErr(f, raw, err))
		}
		return nil
	})
}

// flagValue records a flag's raw text; Apply copies it into the field later,
// so that flags win over the file and the environment whatever the order of
// parsing.
type flagValue struct {
	field Field
	raw   *string
}

func (v flagValue) String() string {
	if v.raw == nil || *v.raw == "" {
		return ""
	}
	return *v.raw
}

func (v flagValue) Set(s string) error {
	probe := reflect.New(v.field.Value.Type()).Elem()
	if err := setString(probe, s); err != nil {
		return maskErr(v.field, s, err)
	}
	*v.raw = s
	return nil
}

// IsBoolFlag lets boolean fields be given as a bare --flag.
func (v flagValue) IsBoolFlag() bool { return v.field.Value.Kind() == reflect.Bool }

// Flags binds the flag-tagged fields of dst to fs. Call Apply after fs.Parse.
type Flags struct {
	set map[string]flagValue
}

// BindFlags registers one flag per field of dst that has a flag tag. With
// sections given, only fields under those dotted paths get flags, so each
// subcommand offers the flags that concern it and two sections may reuse a
// flag name.
func BindFlags(fs *flag.FlagSet, dst any, sections ...string) (*Flags, error) {
	fl := &Flags{set: map[string]flagValue{}}
	err := Walk(dst, func(f Field) error {
		if f.Flag == "" || !inSections(f.Path, sections) {
			return nil
		}
		if fs.Lookup(f.Flag) != nil {
			return fmt.Errorf("config: flag -%s of %s is already defined", f.Flag, f.Path)
		}
		v := flagValue{field: f, raw: new(string)}
		fl.set[f.Flag] = v
		fs.Var(v, f.Flag, f.Doc)
		return nil
	})
	return fl, err
}

func inSections(path string, sections []string) bool {
	if len(sections) == 0 {
		return true
	}
	for _, s := range sections {
		if path == s || strings.HasPrefix(path, s+".") {
			return true
		}
	}
	return false
}

// Apply copies the flags the user gave on the command line into the fields.
func (fl *Flags) Apply(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		v, ok := fl.set[f.Name]
		if !ok || err != nil {
			return
		}
		if e := setString(v.field.Value, *v.raw); e != nil {
			err = fmt.Errorf("config: flag -%s: %w", f.Name, maskErr(v.field, *v.raw, e))
		}
	})
	return err
}

// Field is one leaf of a configuration struct, as Walk sees it.
type Field struct {
	Path string // dotted YAML path, e.g. "producer.poll_interval"
	Env  string
	Flag string
	Doc  string
	// Secret is set for fields tagged secret:"true" or secret:"url";
	// SecretKind is the tag's value.
	Secret     bool
	SecretKind string
	Value      reflect.Value
}

// Walk calls fn for every leaf field of the struct dst points to, in
// declaration order. Maps and slices of structs are leaves.
func Walk(dst any, fn func(Field) error) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: want a pointer to a struct, got %T", dst)
	}
	return walk(v.Elem(), "", fn)
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	timeType     = reflect.TypeOf(time.Time{})
)

func walk(v reflect.Value, prefix string, fn func(Field) error) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != timeType {
			if err := walk(fv, path, fn); err != nil {
				return err
			}
			continue
		}
		kind := secretKind(sf.Tag)
		if err := fn(Field{
			Path:       path,
			Env:        sf.Tag.Get("env"),
			Flag:       sf.Tag.Get("flag"),
			Doc:        sf.Tag.Get("doc"),
			Secret:     kind != "",
			SecretKind: kind,
			Value:      fv,
		}); err != nil {
			return err
		}
	}
	return nil
}

func setString(v reflect.Value, raw string) error {
	raw = strings.TrimSpace(raw)
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("want a duration like 30s or 5m: %w", err)
		}
		v.SetInt(int64(d))
		return nil
	case v.Type() == timeType:
		if raw == "" {
			v.Set(reflect.ValueOf(time.Time{}))
			return nil
		}
		ts, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			return fmt.Errorf("want an RFC 3339 time: %w", err)
		}
		v.Set(reflect.ValueOf(ts.UTC()))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false: %w", err)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer: %w", err)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a non-negative integer: %w", err)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(raw, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a number: %w", err)
		}
		v.SetFloat(n)
	case reflect.Slice:
		parts := splitList(raw)
		out := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setString(out.Index(i), p); err != nil {
				return fmt.Errorf("item %d: %w", i+1, err)
			}
		}
		v.Set(out)
	default:
		return fmt.Errorf("type %s can only be set in the YAML file", v.Type())
	}
	return nil
}

func splitList(raw string) []string {
	if raw == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(raw, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// maskErr keeps a secret's value out of an error message.
func maskErr(f Field, raw string, err error) error {
	if !f.Secret || raw == "" {
		return err
	}
	shown := "***"
	if f.SecretKind == secretURL {
		shown = MaskURL(raw)
	}
	msg := err.Error()
	raw = strings.TrimSpace(raw)
	for _, r := range append([]string{raw}, splitList(raw)...) {
		if r != "" {
			msg = strings.ReplaceAll(msg, r, shown)
		}
	}
	return errors.New(msg)
}

// Print writes the effective configuration as YAML-like "path: value" lines
// with secrets masked, for `callstream config print`.
func Print(src any) (string, error) {
	var b strings.Builder
	err := Walk(src, func(f Field) error {
		fmt.Fprintf(&b, "%s: %s\n", f.Path, formatMasked(f))
		return nil
	})
	return b.String(), err
}

func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Type() == timeType:
		t := v.Interface().(time.Time)
		if t.IsZero() {
			return `""`
		}
		return t.Format(time.RFC3339)
	case v.Kind() == reflect.String:
		return strconv.Quote(v.String())
	case v.Kind() == reflect.Slice && v.Type().Elem() == durationType:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = time.Duration(v.Index(i).Int()).String()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	out, err := yaml.Marshal(maskNested(v).Interface())
	if err != nil {
		return fmt.Sprintf("%v", v.Interface())
	}
	s := strings.TrimSpace(string(out))
	if strings.Contains(s, "\n") {
		return "\n  " + strings.ReplaceAll(s, "\n", "\n  ")
	}
	return s
}
