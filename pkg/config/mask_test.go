package config

import (
	"errors"
	"strings"
	"testing"
)

func TestMaskURL(t *testing.T) {
	tests := []struct {
		in      string
		planted []string // must not appear
		keep    []string // must appear
	}{
		{"", nil, nil},
		{"https://hooks.example.com/calls", nil, []string{"https://hooks.example.com/calls"}},
		{"https://alice:PLANTED-pw@hooks.example.com:8443/a/b", []string{"PLANTED-pw", "alice"}, []string{"https://", "hooks.example.com:8443/a/b"}},
		{"https://PLANTED-user-token@hooks.example.com/x", []string{"PLANTED-user-token"}, []string{"hooks.example.com/x"}},
		{"https://h.example/x?token=PLANTED1&team=ops", []string{"PLANTED1"}, []string{"h.example/x?", "team=ops", "token=***"}},
		{"https://h.example/x?api_key=PLANTED2&Access_Token=PLANTED3&sig=PLANTED4&signature=PLANTED5",
			[]string{"PLANTED2", "PLANTED3", "PLANTED4", "PLANTED5"}, []string{"api_key=***", "Access_Token=***"}},
		{"https://h.example/x?X-Amz-Signature=PLANTED6&X-Amz-Credential=PLANTED7&key=PLANTED8&secret=PLANTED9&password=PLANTED10",
			[]string{"PLANTED6", "PLANTED7", "PLANTED8", "PLANTED9", "PLANTED10"}, []string{"h.example/x"}},
		{"https://h.example/x?apiKey=PLANTED11&auth=PLANTED12", []string{"PLANTED11", "PLANTED12"}, nil},
		{"https://h.example/x?to%6Ben=PLANTED13", []string{"PLANTED13"}, nil}, // an escaped name
		{"https://h.example/cb#access_token=PLANTED14", []string{"PLANTED14"}, []string{"h.example/cb"}},
		{"http://[::1]:9093/api?token=PLANTED15", []string{"PLANTED15"}, []string{"[::1]:9093/api"}},
		{"https://u:PLANTED16@h.example/%zz", []string{"PLANTED16"}, nil}, // does not parse: masked whole
		{"http://alertmanager:9093", nil, []string{"http://alertmanager:9093"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := MaskURL(tc.in)
			for _, p := range tc.planted {
				if strings.Contains(got, p) {
					t.Errorf("MaskURL(%q) = %q shows %q", tc.in, got, p)
				}
			}
			for _, k := range tc.keep {
				if !strings.Contains(got, k) {
					t.Errorf("MaskURL(%q) = %q lost %q", tc.in, got, k)
				}
			}
			if tc.in != "" && got == "" {
				t.Errorf("MaskURL(%q) is empty; a set value must look set", tc.in)
			}
		})
	}
}

type urlCfg struct {
	Endpoint string            `yaml:"endpoint" env:"T_ENDPOINT" secret:"url"`
	Mirrors  []string          `yaml:"mirrors" secret:"url"`
	Headers  map[string]string `yaml:"headers" secret:"true"`
	Hooks    []hook            `yaml:"hooks"`
	Plain    string            `yaml:"plain"`
}

type hook struct {
	Name    string            `yaml:"name"`
	URL     string            `yaml:"url" secret:"url"`
	Headers map[string]string `yaml:"headers" secret:"true"`
}

// Print shows URL fields masked, top level and nested, keeping what tells
// them apart, and the names but not the values of a secret map.
func TestPrintMasksURLsAndMapValues(t *testing.T) {
	cfg := urlCfg{
		Endpoint: "https://u:PLANTED-a@api.example.com/v1?token=PLANTED-b",
		Mirrors:  []string{"https://m.example.com/?key=PLANTED-c"},
		Headers:  map[string]string{"Authorization": "Bearer PLANTED-d"},
		Hooks: []hook{{Name: "billing", URL: "https://billing.example.com/h?sig=PLANTED-e&team=x",
			Headers: map[string]string{"X-Api-Key": "PLANTED-f"}}},
		Plain: "visible",
	}
	out, err := Print(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"PLANTED-a", "PLANTED-b", "PLANTED-c", "PLANTED-d", "PLANTED-e", "PLANTED-f"} {
		if strings.Contains(out, p) {
			t.Errorf("Print shows %s:\n%s", p, out)
		}
	}
	for _, k := range []string{"api.example.com/v1", "m.example.com", "billing.example.com/h", "team=x", "Authorization", "X-Api-Key", "visible"} {
		if !strings.Contains(out, k) {
			t.Errorf("Print lost %q:\n%s", k, out)
		}
	}
	if cfg.Hooks[0].Headers["X-Api-Key"] != "PLANTED-f" || cfg.Headers["Authorization"] != "Bearer PLANTED-d" {
		t.Fatal("masking changed the configuration itself")
	}
	ref, err := Reference(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ref, "PLANTED") {
		t.Fatalf("Reference shows a planted default:\n%s", ref)
	}
}

// An error about a URL field's value shows it masked.
func TestErrorsMaskURLFields(t *testing.T) {
	f := Field{Path: "endpoint", Secret: true, SecretKind: "url"}
	raw := "https://u:PLANTED-pw@h.example/?token=PLANTED-tok"
	err := maskErr(f, raw, errors.New("bad value "+raw))
	if strings.Contains(err.Error(), "PLANTED") || !strings.Contains(err.Error(), "h.example") {
		t.Fatalf("error %q", err)
	}
}
