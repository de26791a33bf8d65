package producer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpod"
)

// TestSanitizedEventsIntoPostgres serves records holding what PostgreSQL
// refuses (invalid UTF-8 in values and in a member name, \u0000, unpaired
// surrogates) from a fake API on 127.0.0.1, and inserts each published
// event into the real PostgreSQL: the whole value and its raw into jsonb
// columns, the string fields into text columns. Every row goes in, and raw
// still holds the original record.
func TestSanitizedEventsIntoPostgres(t *testing.T) {
	dsn, _ := testenv.PostgresSchema(t, "producer_utf8")
	ts := func(d time.Duration) string { return edgeT0.Add(d).Format(time.RFC3339) }
	raws := []string{
		`{"id":"bad-bytes","source_number":"+91` + "\xff\xfe" + `","destination_number":"+1","call_type":"outbound","call_status":"completed","creation_time":"` + ts(-5*time.Minute) + `","end_reason":"caller` + "\xc3\x28" + `hangup"}`,
		`{"id":"nul","source_number":"+91\u0000","destination_number":"+1","call_type":"inbound","call_status":"missed","creation_time":"` + ts(-4*time.Minute) + `","end_reason":"no\u0000answer"}`,
		`{"id":"surrogates","source_number":"+91","destination_number":"+1\ud800","call_type":"inbound","call_status":"failed","creation_time":"` + ts(-3*time.Minute) + `","end_reason":"x\udfff","n` + "\x80" + `":1}`,
		`{"id":"clean","source_number":"+91 é","destination_number":"+1","call_type":"inbound","call_status":"failed","creation_time":"` + ts(-2*time.Minute) + `","end_reason":"\ud83d\ude00"}`,
	}
	api := newFakeAPI(t)
	var recs []fakeRecord
	for i, r := range raws {
		recs = append(recs, fakeRecord{edgeT0.Add(time.Duration(i-5) * time.Minute), r})
	}
	api.set(recs...)
	bus := &busPublisher{}
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), edgeConfig(), bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	if err := ep.pollOrg(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	msgs := bus.on("calls")
	if len(msgs) != len(raws) || len(bus.on("dlq")) != 0 {
		t.Fatalf("%d events and %d dead letters, want %d events", len(msgs), len(bus.on("dlq")), len(raws))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE edge (call_key text, event jsonb, raw jsonb, source_number text, destination_number text, end_reason text)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		var e struct {
			CallKey           string          `json:"call_key"`
			SourceNumber      string          `json:"source_number"`
			DestinationNumber string          `json:"destination_number"`
			EndReason         string          `json:"end_reason"`
			Raw               json.RawMessage `json:"raw"`
		}
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO edge VALUES ($1, $2::jsonb, $3::jsonb, $4, $5, $6)`,
			e.CallKey, string(m.Payload), string(e.Raw), e.SourceNumber, e.DestinationNumber, e.EndReason); err != nil {
			t.Errorf("event %s: PostgreSQL refused it: %v", e.CallKey, err)
		}
	}
	// raw is still an object with the fields, and the original comes back.
	rows, err := conn.Query(ctx, `SELECT call_key, raw->>'call_status', coalesce(raw->>'`+unpod.RawBase64Member+`', '') FROM edge ORDER BY call_key`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	byKey := map[string]string{}
	for rows.Next() {
		var key, status, b64 string
		if err := rows.Scan(&key, &status, &b64); err != nil {
			t.Fatal(err)
		}
		if status == "" {
			t.Errorf("%s: raw lost its call_status", key)
		}
		orig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Errorf("%s: %v", key, err)
		}
		byKey[key] = string(orig)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i, key := range []string{"bad-bytes", "nul", "surrogates"} {
		if byKey[key] != raws[i] {
			t.Errorf("%s: original from raw is %q, want %q", key, byKey[key], raws[i])
		}
	}
	if o, ok := byKey["clean"]; !ok || o != "" {
		t.Errorf("the clean record was rewritten (original %q, present %v)", o, ok)
	}
}
