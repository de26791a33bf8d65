package unpod

import (
	"strings"
	"testing"

	"github.com/callstream/callstream/pkg/config"
)

func TestConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	env := map[string]string{"UNPOD_API_URL": "http://127.0.0.1:8089/", "UNPOD_API_TOKEN": "tok-xyz"}
	if err := config.ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.BaseURL != "http://127.0.0.1:8089/" || cfg.Token != "tok-xyz" {
		t.Fatalf("config = %+v", cfg)
	}
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	out, err := config.Print(&cfg)
	if err != nil || strings.Contains(out, "tok-xyz") {
		t.Fatalf("Print shows the token or fails (%v):\n%s", err, out)
	}
}
