package config

import (
	"net/url"
	"reflect"
	"strings"
)

// Values of the secret tag.
const (
	secretAll = "true" // masked entirely
	secretURL = "url"  // masked with MaskURL
)

func secretKind(tag reflect.StructTag) string {
	switch k := tag.Get("secret"); k {
	case secretAll, secretURL:
		return k
	}
	return ""
}

// mask is what a masked string shows.
const mask = "***"

// MaskURL returns raw with whatever may be a credential masked: the user
// information (user:password@), the values of query parameters whose names
// suggest a secret (token, key, secret, sig, signature, password, auth and
// the like, in any case and spelling: api_key, access_token, X-Amz-Signature)
// and the fragment. Scheme, host, port, path and the other parameters stay,
// so operators can still tell endpoints apart. Text that does not parse as
// a URL is masked whole. A URL whose path is itself the credential (a Slack
// incoming webhook) needs secret:"true" instead.
func MaskURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return mask
	}
	user := ""
	if u.User != nil {
		// Put in by hand below: url.User would percent-encode the stars.
		user = mask + "@"
		if _, ok := u.User.Password(); ok {
			user = mask + ":" + mask + "@"
		}
		u.User = nil
	}
	if u.RawQuery != "" {
		u.RawQuery = maskQuery(u.RawQuery)
	}
	u.ForceQuery = false
	if u.Fragment != "" || u.RawFragment != "" {
		u.Fragment, u.RawFragment = mask, ""
	}
	out := u.String()
	if user != "" {
		i := strings.Index(out, "//")
		if i < 0 {
			return mask
		}
		out = out[:i+2] + user + out[i+2:]
	}
	return out
}

// maskQuery masks the values of secret-looking parameters, keeping the
// order and spelling of the rest.
func maskQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, part := range parts {
		k, _, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if secretParam(name) {
			parts[i] = k + "=" + mask
		}
	}
	return strings.Join(parts, "&")
}

// secretWords are parts of parameter names that usually carry a
// credential. Masking a harmless parameter by mistake costs little; showing
// a token does not.
var secretWords = []string{"token", "secret", "key", "sig", "pass", "pwd", "auth", "credential", "session", "jwt", "hmac"}

func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// formatMasked formats f's value as Print shows it, secrets masked.
func formatMasked(f Field) string {
	if !f.Secret {
		return formatValue(f.Value)
	}
	if !maskable(f.Value.Type()) {
		// A secret of another shape (a map of lists, keyed by the
		// secrets themselves) shows nothing of itself.
		if v := formatValue(f.Value); v == "" || v == `""` {
			return v
		}
		return `"` + mask + `"`
	}
	out := reflect.New(f.Value.Type()).Elem()
	out.Set(f.Value)
	maskValue(out, f.SecretKind)
	return formatValue(out)
}

// maskable reports whether maskValue keeps the shape of a value of type t.
func maskable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String:
		return true
	case reflect.Slice, reflect.Map:
		return t.Elem().Kind() == reflect.String && (t.Kind() != reflect.Map || t.Key().Kind() == reflect.String)
	}
	return false
}

// maskNested returns a copy of v in which every field tagged secret, at any
// depth (structs inside slices and maps), is masked. Print and Reference
// use it for leaves such as a list of webhook endpoints.
func maskNested(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := 0; i < v.NumField(); i++ {
			f := out.Field(i)
			if !v.Type().Field(i).IsExported() {
				continue
			}
			if kind := secretKind(v.Type().Field(i).Tag); kind != "" {
				maskValue(f, kind)
				continue
			}
			f.Set(maskNested(f))
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(maskNested(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out.SetMapIndex(iter.Key(), maskNested(iter.Value()))
		}
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(maskNested(v.Elem()))
		return out
	}
	return v
}

// maskValue replaces a secret field's content in place (f is settable): with
// "***" (kind "true") or MaskURL (kind "url") for strings, lists of strings
// and the values of maps of strings; any other type is zeroed.
func maskValue(f reflect.Value, kind string) {
	str := func(s string) string {
		switch {
		case s == "":
			return ""
		case kind == secretURL:
			return MaskURL(s)
		}
		return mask
	}
	switch {
	case f.Kind() == reflect.String:
		f.SetString(str(f.String()))
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		if f.IsNil() {
			return
		}
		out := reflect.MakeSlice(f.Type(), f.Len(), f.Len())
		for i := 0; i < f.Len(); i++ {
			out.Index(i).SetString(str(f.Index(i).String()))
		}
		f.Set(out)
	case f.Kind() == reflect.Map && maskable(f.Type()):
		if f.IsNil() {
			return
		}
		out := reflect.MakeMapWithSize(f.Type(), f.Len())
		iter := f.MapRange()
		for iter.Next() {
			v := reflect.New(f.Type().Elem()).Elem()
			v.SetString(str(iter.Value().String()))
			out.SetMapIndex(iter.Key(), v)
		}
		f.Set(out)
	default:
		f.Set(reflect.Zero(f.Type()))
	}
}
