package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	// HeaderDelivery in a response set to AbortMessage stops the retries of
	// that message (it goes to the DLQ instead).
	HeaderDelivery = "webhook-delivery"
	AbortMessage   = "abort-message"
)

// SecretPrefix starts every signing secret; base64 of the key follows.
const SecretPrefix = "whsec_"

// Errors returned by Verify.
var (
	ErrNoSignature   = errors.New("webhooks: no valid signature matches")
	ErrTimestamp     = errors.New("webhooks: timestamp outside the tolerance")
	ErrBadTimestamp  = errors.New("webhooks: timestamp is not Unix seconds")
	ErrInvalidSecret = errors.New("webhooks: secret is not whsec_ followed by base64 of 24 to 64 bytes")
)

// decodeSecret returns the key of a whsec_ secret. The prefix is optional,
// as in the Standard Webhooks libraries.
func decodeSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, ErrInvalidSecret
	}
	return key, nil
}

// signer holds decoded keys so deliveries do not decode secrets again.
type signer struct{ keys [][]byte }

func newSigner(secrets []string) (*signer, error) {
	s := &signer{}
	for _, sec := range secrets {
		k, err := decodeSecret(sec)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// sign returns the webhook-signature value: one "v1,<base64>" per key,
// space-separated.
func (s *signer) sign(id string, ts int64, body []byte) string {
	var b strings.Builder
	for i, k := range s.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac(k, id, ts, body)))
	}
	return b.String()
}

func mac(key []byte, id string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	var buf [24]byte
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(buf[:0], ts, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns the webhook-signature header value for a message signed with
// one secret at timestamp ts: "v1," followed by the base64 HMAC-SHA256 of
// id.timestamp.body.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	s, err := newSigner([]string{secret})
	if err != nil {
		return "", err
	}
	return s.sign(id, ts.Unix(), body), nil
}

// Verify checks a received webhook the way the Standard Webhooks
// specification says: timestamp is the webhook-timestamp header, within
// tolerance of now (0 skips that check), and signatureHeader, the
// webhook-signature header, holds at least one "v1,<base64>" entry that
// matches secret. body must be the raw request body, unparsed.
func Verify(secret, id, timestamp string, body []byte, signatureHeader string, now time.Time, tolerance time.Duration) error {
	key, err := decodeSecret(secret)
	if err != nil {
		return err
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBadTimestamp, timestamp)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: %s off", ErrTimestamp, d)
		}
	}
	want := mac(key, id, ts, body)
	for _, entry := range strings.Fields(signatureHeader) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrNoSignature
}
