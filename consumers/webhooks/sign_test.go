package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks specification's published test vector (from the
// reference libraries' tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesStandardWebhooksVector(t *testing.T) {
	got, err := Sign(vectorSecret, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Fatalf("Sign = %q, the specification's vector is %q", got, vectorSignature)
	}
}

// referenceSign is the specification's algorithm written out independently
// of the package: base64(HMAC-SHA256(key, id + "." + ts + "." + body)).
func referenceSign(t testing.TB, secret, id string, ts int64, body []byte) string {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "."))
	h.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func TestReferenceSignMatchesVector(t *testing.T) {
	if got := referenceSign(t, vectorSecret, vectorID, vectorTimestamp, []byte(vectorBody)); got != vectorSignature {
		t.Fatalf("referenceSign = %q, want %q", got, vectorSignature)
	}
}

func TestVerify(t *testing.T) {
	at := time.Unix(vectorTimestamp, 0)
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-of-32-bytes-long!"))
	otherSig, err := Sign(other, vectorID, at, []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		secret    string
		id        string
		timestamp string
		body      string
		header    string
		now       time.Time
		tolerance time.Duration
		want      error
	}{
		{"vector", vectorSecret, vectorID, "1614265330", vectorBody, vectorSignature, at, 5 * time.Minute, nil},
		{"secret without prefix", strings.TrimPrefix(vectorSecret, "whsec_"), vectorID, "1614265330", vectorBody, vectorSignature, at, 5 * time.Minute, nil},
		{"rotation: second of two matches", vectorSecret, vectorID, "1614265330", vectorBody, otherSig + " " + vectorSignature, at, 5 * time.Minute, nil},
		{"rotation: old secret still verifies", other, vectorID, "1614265330", vectorBody, otherSig + " " + vectorSignature, at, 5 * time.Minute, nil},
		{"tolerance disabled", vectorSecret, vectorID, "1614265330", vectorBody, vectorSignature, at.Add(24 * time.Hour), 0, nil},
		{"wrong secret", other, vectorID, "1614265330", vectorBody, vectorSignature, at, 5 * time.Minute, ErrNoSignature},
		{"tampered body", vectorSecret, vectorID, "1614265330", `{"test": 2432232315}`, vectorSignature, at, 5 * time.Minute, ErrNoSignature},
		{"other id", vectorSecret, "msg_other", "1614265330", vectorBody, vectorSignature, at, 5 * time.Minute, ErrNoSignature},
		{"other timestamp", vectorSecret, vectorID, "1614265331", vectorBody, vectorSignature, at, 5 * time.Minute, ErrNoSignature},
		{"unknown version only", vectorSecret, vectorID, "1614265330", vectorBody, "v2," + strings.TrimPrefix(vectorSignature, "v1,"), at, 5 * time.Minute, ErrNoSignature},
		{"empty header", vectorSecret, vectorID, "1614265330", vectorBody, "", at, 5 * time.Minute, ErrNoSignature},
		{"too old", vectorSecret, vectorID, "1614265330", vectorBody, vectorSignature, at.Add(6 * time.Minute), 5 * time.Minute, ErrTimestamp},
		{"too new", vectorSecret, vectorID, "1614265330", vectorBody, vectorSignature, at.Add(-6 * time.Minute), 5 * time.Minute, ErrTimestamp},
		{"exactly the tolerance old", vectorSecret, vectorID, "1614265330", vectorBody, vectorSignature, at.Add(5 * time.Minute), 5 * time.Minute, nil},
		{"exactly the tolerance ahead", vectorSecret, vectorID, "1614265330", vectorBody, vectorSignature, at.Add(-5 * time.Minute), 5 * time.Minute, nil},
		{"timestamp not a number", vectorSecret, vectorID, "soon", vectorBody, vectorSignature, at, 5 * time.Minute, ErrBadTimestamp},
		{"secret not base64", "whsec_!!!", vectorID, "1614265330", vectorBody, vectorSignature, at, 5 * time.Minute, ErrInvalidSecret},
		{"secret too short", "whsec_c2hvcnQ=", vectorID, "1614265330", vectorBody, vectorSignature, at, 5 * time.Minute, ErrInvalidSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.id, tc.timestamp, []byte(tc.body), tc.header, tc.now, tc.tolerance)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignerSignsWithEveryActiveSecret(t *testing.T) {
	a, b := newSecret(t), newSecret(t)
	s, err := newSigner([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event_id":"x"}`)
	got := s.sign("evt", 1700000000, body)
	want := referenceSign(t, a, "evt", 1700000000, body) + " " + referenceSign(t, b, "evt", 1700000000, body)
	if got != want {
		t.Fatalf("sign = %q, want %q", got, want)
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	bad := "whsec_" + strings.Repeat("A", 10) + "!"
	err := Verify(bad, "id", "1", nil, "", time.Now(), 0)
	if err == nil || strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "AAAAAAAAAA") {
		t.Fatalf("error %v should reject the secret without quoting it", err)
	}
	cfg := testConfig(EndpointConfig{Name: "a", URL: "http://127.0.0.1:1/", Secrets: []string{bad}})
	if err := cfg.validate(); err == nil || strings.Contains(err.Error(), "AAAAAAAAAA") {
		t.Fatalf("validate error %v should reject the secret without quoting it", err)
	}
}
