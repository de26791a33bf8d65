package unpod

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/callstream/callstream/pkg/config"
)

// TestDefaultStatusMapping pins the documented default mapping (status.go
// and README's Events section): each spelling telephony APIs use maps to
// the status the documentation chose, whatever its case and separators;
// in-progress statuses stay unknown on purpose.
func TestDefaultStatusMapping(t *testing.T) {
	tests := map[string]string{
		"completed": StatusCompleted, "Completed": StatusCompleted, "complete": StatusCompleted, "ANSWERED": StatusCompleted,
		"missed": StatusMissed, "no-answer": StatusMissed, "noanswer": StatusMissed, "no_answer": StatusMissed,
		"No Answer": StatusMissed, "unanswered": StatusMissed, "timeout": StatusMissed, "timed-out": StatusMissed,
		"busy": StatusMissed, "BUSY": StatusMissed, "voicemail": StatusMissed, "voice_mail": StatusMissed,
		"declined": StatusMissed, "canceled": StatusMissed, "cancelled": StatusMissed, "abandoned": StatusMissed,
		"failed": StatusFailed, "failure": StatusFailed, "error": StatusFailed, "rejected": StatusFailed,
		// Not outcomes: dead-lettered, never guessed.
		"ringing": "", "queued": "", "initiated": "", "in-progress": "", "": "", "ok": "",
	}
	for spelling, want := range tests {
		got, ok := NormalizeStatus(spelling)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeStatus(%q) = %q, %v; want %q", spelling, got, ok, want)
		}
	}
}

// TestStatusMapConfig extends the mapping in YAML and in the environment
// (the form each takes in pkg/config), and checks that a client decodes
// its pages with it: added spellings map, overridden ones change, and a
// spelling still unknown is an Invalid record wrapping ErrUnknownStatus.
func TestStatusMapConfig(t *testing.T) {
	var fromYAML Config
	if err := config.LoadYAML("test.yaml", []byte("status_map: {busy: failed, Ringing-Out: missed}\n"), &fromYAML); err != nil {
		t.Fatal(err)
	}
	var fromEnv Config
	env := map[string]string{"UNPOD_STATUS_MAP": "busy=failed, ringing_out=missed"}
	if err := config.ApplyEnv(&fromEnv, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	page := `{"count":3,"data":[` +
		`{"call_status":"busy","creation_time":"2026-02-07T05:57:00Z"},` +
		`{"call_status":"ringing out","creation_time":"2026-02-07T05:57:01Z"},` +
		`{"call_status":"ringing","creation_time":"2026-02-07T05:57:02Z"}]}`
	for name, cfg := range map[string]Config{"yaml": fromYAML, "env": fromEnv} {
		t.Run(name, func(t *testing.T) {
			srv, _ := script(t, func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(page)) })
			c := fastConfig(srv.URL)
			c.StatusMap = cfg.StatusMap
			client, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			p, err := client.CallLogs(context.Background(), Query{Org: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Records) != 2 || p.Records[0].CallStatus != StatusFailed || p.Records[0].RawStatus != "busy" ||
				p.Records[1].CallStatus != StatusMissed {
				t.Fatalf("records %+v: want busy as failed and ringing out as missed", p.Records)
			}
			if len(p.Invalid) != 1 || !errors.Is(p.Invalid[0].Err, ErrUnknownStatus) {
				t.Fatalf("invalid %+v: want ringing as an unknown status", p.Invalid)
			}
			if s, ok := UnknownStatus(p.Invalid[0].Err); !ok || s != "ringing" {
				t.Fatalf("UnknownStatus = %q, %v", s, ok)
			}
			rec, err := client.DecodeRecord([]byte(`{"call_status":"BUSY","creation_time":"2026-02-07T05:57:00Z"}`))
			if err != nil || rec.CallStatus != StatusFailed {
				t.Fatalf("client DecodeRecord = %+v, %v: want the client's mapping", rec, err)
			}
			if rec, err := DecodeRecord([]byte(`{"call_status":"BUSY","creation_time":"2026-02-07T05:57:00Z"}`)); err != nil || rec.CallStatus != StatusMissed {
				t.Fatalf("package DecodeRecord = %+v, %v: want the default mapping", rec, err)
			}
		})
	}
	out, err := config.Print(&fromYAML)
	if err != nil || !strings.Contains(out, "status_map: \n  Ringing-Out: missed\n  busy: failed\n") {
		t.Errorf("config print shows %q, %v", out, err)
	}
}

func TestStatusMapInvalid(t *testing.T) {
	_, err := New(Config{Token: "t", StatusMap: StatusMap{"busy", "voicemail=answered", "=missed", "ok=completed"}})
	if err == nil {
		t.Fatal("bad status_map accepted")
	}
	for _, want := range []string{`"busy"`, `"voicemail=answered"`, `"=missed"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name entry %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "ok=completed") {
		t.Errorf("error %q names a good entry", err)
	}
	// config validate checks the configuration with Validate alone.
	cfg := DefaultConfig()
	cfg.StatusMap = StatusMap{"voicemail=answered"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `"voicemail=answered"`) {
		t.Errorf("Validate of a bad status_map = %v, want an error naming the entry", err)
	}
	cfg.StatusMap = StatusMap{"voicemail=missed"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate of a good status_map: %v", err)
	}
}
