package main

import (
	"fmt"

	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/callstream/callstream/pkg/config"
)

// The configuration reference is generated from the code; this fails when
// docs/configuration.md was not regenerated after an option changed.
func TestConfigurationDocIsCurrent(t *testing.T) {
	want, err := configReference()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatalf("read docs/configuration.md: %v (generate it: go run ./cmd/callstream config docs > docs/configuration.md)", err)
	}
	if string(got) != want {
		t.Fatal("docs/configuration.md is stale; regenerate it: go run ./cmd/callstream config docs > docs/configuration.md")
	}
}

func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.yaml"
	bad := dir + "/bad.yaml"
	os.WriteFile(good, []byte("topic_prefix: acme.\n"), 0o600)
	os.WriteFile(bad, []byte("topic_prefx: acme.\n"), 0o600)
	tests := []struct {
		args     []string
		env      map[string]string
		wantCode int
		wantOut  string
	}{
		{[]string{"config", "validate", "--config", good}, nil, 0, "valid"},
		{[]string{"config", "validate", "--config", bad}, nil, 1, "topic_prefx"},
		{[]string{"config", "print", "--config", good}, map[string]string{"CALLSTREAM_STATE_DIR": "/var/lib/cs"}, 0, `state_dir: "/var/lib/cs"`},
		{[]string{"config", "print", "--config", good}, nil, 0, `topic_prefix: "acme."`},
		{[]string{"config", "validate", "--config", good}, map[string]string{"CALLSTREAM_EXTERNAL_URL": "ops.example.com"}, 2, "http.external_url"},
		{[]string{"config"}, nil, 2, "want"},
		{[]string{"nonsense"}, nil, 2, "unknown command"},
		{[]string{"version"}, nil, 0, "callstream"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			e := &env{stdout: &out, stderr: &out, lookupEnv: func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }}
			code := runMain(context.Background(), e, tt.args)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("code %d (want %d), output %q (want it to contain %q)", code, tt.wantCode, out.String(), tt.wantOut)
			}
		})
	}
}

// Every YAML example in the README must be a valid configuration.
func TestReadmeConfigExamplesAreValid(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```yaml\n")
	if len(blocks) < 2 {
		t.Fatal("README has no yaml example; this test would check nothing")
	}
	for i, b := range blocks[1:] {
		example, _, ok := strings.Cut(b, "```")
		if !ok {
			t.Fatalf("yaml block %d is not closed", i+1)
		}
		cfg := DefaultConfig()
		if err := config.LoadYAML(fmt.Sprintf("README yaml block %d", i+1), []byte(example), &cfg); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// config print never shows a secret held in a webhook endpoint's headers
// or URL, or in an alerting notifier's URL, while it keeps what tells the
// endpoints apart (scheme, host, path, header names).
func TestConfigPrintMasksSecrets(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/secrets.yaml"
	yml := `
webhooks:
  endpoints:
    - name: billing
      url: https://billing.example.com/hooks/calls?token=PLANTED-query-token&team=billing
      secrets: [whsec_UExBTlRFRC1zaWduaW5nLXNlY3JldC0xMjM0NTY3OA==]
      headers: {Authorization: "Bearer PLANTED-header-bearer", X-Api-Key: PLANTED-header-key}
    - name: crm
      url: https://crm-user:PLANTED-url-password@crm.example.com/in?api_key=PLANTED-api-key&sig=PLANTED-sig
      secrets: [whsec_UExBTlRFRC1zaWduaW5nLXNlY3JldC0xMjM0NTY3OA==]
alerting:
  notifiers:
    webhook:
      url: https://ops:PLANTED-alert-password@alerts.example.com/hook?access_token=PLANTED-alert-token
      secret: whsec_UExBTlRFRC1zaWduaW5nLXNlY3JldC0xMjM0NTY3OA==
    slack:
      url: https://hooks.slack.com/services/T000/B000/PLANTED-slack-path
    alertmanager:
      url: http://am:PLANTED-am-password@alertmanager.example.com:9093/?secret=PLANTED-am-secret
`
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, lookupEnv: func(string) (string, bool) { return "", false }}
	if code := runMain(context.Background(), e, []string{"config", "print", "--config", path}); code != 0 {
		t.Fatalf("config print exited %d: %s", code, out.String())
	}
	printed := out.String()
	// The signing secret's base64 spells PLANTED-signing-secret.
	for _, planted := range []string{"PLANTED", "UExBTlRFRC1zaWduaW5nLXNlY3JldC0xMjM0NTY3OA", "crm-user"} {
		if strings.Contains(printed, planted) {
			for _, line := range strings.Split(printed, "\n") {
				if strings.Contains(line, planted) {
					t.Errorf("config print shows %q: %s", planted, line)
				}
			}
		}
	}
	for _, keep := range []string{"billing.example.com/hooks/calls", "team=billing", "crm.example.com/in", "Authorization", "X-Api-Key",
		"alerts.example.com/hook", "alertmanager.example.com:9093"} {
		if !strings.Contains(printed, keep) {
			t.Errorf("config print lost %q, which tells the endpoints apart:\n%s", keep, printed)
		}
	}
}

// TestConfigValidateNamesEveryProblem: `config validate` runs the checks
// the commands run, not only the parser: each bad setting of issue 14
// (item 11) is refused and named, all of them in one run.
func TestConfigValidateNamesEveryProblem(t *testing.T) {
	file := t.TempDir() + "/bad.yaml"
	yaml := `log: {level: loud}
producer: {poll_interval: -5s, rescan_ages: [5m, 0s]}
storage: {dsn: "mysql://app@db/calls"}
lake: {compression: lzo}
alerting:
  notifiers:
    slack: {url: "ftp://hooks.slack.example/x"}
webhooks:
  endpoints:
    - {name: billing, url: "https://billing.example.com/hooks", secrets: ["whsec_not-base64!"]}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, lookupEnv: func(string) (string, bool) { return "", false }}
	if code := runMain(context.Background(), e, []string{"config", "validate", "--config", file}); code != 1 {
		t.Fatalf("config validate exited %d, want 1:\n%s", code, out.String())
	}
	for _, want := range []string{`log level "loud"`, "poll_interval", "rescan_ages", `scheme "mysql"`, `"lzo"`, "slack", "billing"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output does not name %q:\n%s", want, out.String())
		}
	}
}
