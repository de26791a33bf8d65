package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Interval time.Duration   `yaml:"interval" env:"T_INTERVAL" flag:"interval" doc:"How often."`
	Ages     []time.Duration `yaml:"ages" env:"T_AGES"`
}

type sample struct {
	Name   string   `yaml:"name" env:"T_NAME" flag:"name"`
	Token  string   `yaml:"token" env:"T_TOKEN" secret:"true"`
	Orgs   []string `yaml:"orgs" env:"T_ORGS"`
	Count  int      `yaml:"count" env:"T_COUNT"`
	Inner  inner    `yaml:"inner"`
	Enable bool     `yaml:"enable" flag:"enable"`
}

func TestLayersOverrideInOrder(t *testing.T) {
	cfg := sample{Name: "default", Count: 1, Inner: inner{Interval: time.Second}}
	yml := "name: file\ncount: 2\ninner:\n  interval: 5s\n  ages: [0s, 5m]\n"
	if err := LoadYAML("test.yaml", []byte(yml), &cfg); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"T_NAME": "env", "T_ORGS": "a, b,,c", "T_INTERVAL": "7s"}
	if err := ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fl, err := BindFlags(fs, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-name", "flag", "-enable"}); err != nil {
		t.Fatal(err)
	}
	if err := fl.Apply(fs); err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "flag" || cfg.Count != 2 || !cfg.Enable || cfg.Inner.Interval != 7*time.Second {
		t.Fatalf("layers applied wrongly: %+v", cfg)
	}
	if strings.Join(cfg.Orgs, "|") != "a|b|c" {
		t.Fatalf("orgs = %q", cfg.Orgs)
	}
	if len(cfg.Inner.Ages) != 2 || cfg.Inner.Ages[1] != 5*time.Minute {
		t.Fatalf("ages = %v", cfg.Inner.Ages)
	}
}

func TestErrorsNameTheInput(t *testing.T) {
	tests := []struct {
		name string
		run  func(*sample) error
		want string
	}{
		{"unknown yaml key", func(c *sample) error { return LoadYAML("c.yaml", []byte("nmae: x\n"), c) }, "nmae"},
		{"bad duration env", func(c *sample) error {
			return ApplyEnv(c, func(k string) (string, bool) { return "soon", k == "T_INTERVAL" })
		}, "T_INTERVAL"},
		{"bad int env", func(c *sample) error {
			return ApplyEnv(c, func(k string) (string, bool) { return "many", k == "T_COUNT" })
		}, "T_COUNT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(&sample{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestPrintMasksSecrets(t *testing.T) {
	out, err := Print(&sample{Token: "s3cr3t-token", Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "s3cr3t") || !strings.Contains(out, `token: "***"`) {
		t.Fatalf("secret not masked:\n%s", out)
	}
}

func TestReferenceListsEveryOption(t *testing.T) {
	out, err := Reference(&sample{Name: "n", Token: "hidden", Inner: inner{Interval: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`inner.interval`", "`T_INTERVAL`", "`--interval`", "`5s`", "How often.", "`token`"} {
		if !strings.Contains(out, want) {
			t.Errorf("reference lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Fatalf("reference shows a secret default:\n%s", out)
	}
}

func TestBindFlagsSections(t *testing.T) {
	var cfg sample
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if _, err := BindFlags(fs, &cfg, "inner"); err != nil {
		t.Fatal(err)
	}
	if fs.Lookup("interval") == nil || fs.Lookup("name") != nil {
		t.Fatal("want only the flags of the inner section")
	}
	if _, err := BindFlags(fs, &cfg, "inner"); err == nil || !strings.Contains(err.Error(), "already defined") {
		t.Fatalf("binding twice: err = %v, want a clear duplicate-flag error", err)
	}
}

func TestPrintMasksSecretsInsideLists(t *testing.T) {
	type endpoint struct {
		URL     string   `yaml:"url"`
		Secrets []string `yaml:"secrets" secret:"true"`
		Token   string   `yaml:"token" secret:"true"`
	}
	type withList struct {
		Endpoints []endpoint          `yaml:"endpoints"`
		ByName    map[string]endpoint `yaml:"by_name"`
	}
	cfg := withList{
		Endpoints: []endpoint{{URL: "https://a.example", Secrets: []string{"whsec_AAAA", "whsec_BBBB"}, Token: "tok-1"}},
		ByName:    map[string]endpoint{"b": {URL: "https://b.example", Token: "tok-2"}},
	}
	out, err := Print(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"whsec_AAAA", "whsec_BBBB", "tok-1", "tok-2"} {
		if strings.Contains(out, secret) {
			t.Fatalf("Print shows %s:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "https://a.example") || cfg.Endpoints[0].Token != "tok-1" {
		t.Fatalf("masking lost the non-secret fields or changed the original:\n%s", out)
	}
}
