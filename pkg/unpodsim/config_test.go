package unpodsim

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/config"
)

// TestConfigLoads proves the Config works with pkg/config the way
// `callstream simulate` loads it: YAML, then environment, then flags.
func TestConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	yml := `
seed: 9
orgs: [acme, umbrella]
tokens: {t-umbrella: [umbrella]}
calls_per_minute: 120
incidents:
  - {kind: failed_burst, org: umbrella, after: 1m, duration: 2m, every: 10m, intensity: 0.9}
faults: {error_500: 0.05, retry_after: 2s}
`
	if err := config.LoadYAML("sim.yaml", []byte(yml), &cfg); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"UNPOD_SIM_CALLS_PER_MINUTE": "240", "UNPOD_SIM_TOKEN": "s3cret"}
	if err := config.ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fl, err := config.BindFlags(fs, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--listen", "127.0.0.1:9999", "--fault-429", "0.1", "--duration-formats", "hms"}); err != nil {
		t.Fatal(err)
	}
	if err := fl.Apply(fs); err != nil {
		t.Fatal(err)
	}
	if cfg.Seed != 9 || len(cfg.Orgs) != 2 || cfg.CallsPerMinute != 240 || cfg.Token != "s3cret" ||
		cfg.Listen != "127.0.0.1:9999" || cfg.Faults.Throttle429 != 0.1 || cfg.Faults.Error500 != 0.05 ||
		cfg.Faults.RetryAfter != 2*time.Second || cfg.DurationFormats != "hms" ||
		len(cfg.Incidents) != 1 || cfg.Incidents[0].Every != 10*time.Minute || cfg.Tokens["t-umbrella"][0] != "umbrella" {
		t.Fatalf("loaded config: %+v", cfg)
	}
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	out, err := config.Print(&cfg)
	if err != nil || strings.Contains(out, "s3cret") || strings.Contains(out, "t-umbrella") {
		t.Fatalf("Print shows a secret or fails (%v):\n%s", err, out)
	}
}
