// Package webhook verifies the webhooks mimoq sends, for a receiver written
// in Go. mimoq signs every delivery by the Standard Webhooks scheme
// (https://www.standardwebhooks.com): the headers webhook-id,
// webhook-timestamp (Unix seconds) and webhook-signature, which holds one or
// more space-separated "v1,<base64 HMAC-SHA256 of id.timestamp.body>"
// entries; secrets are "whsec_" followed by the base64 of the key. Any
// Standard Webhooks library verifies them as well as Verify does.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock: the Standard Webhooks recommendation, which keeps a
// captured delivery from being replayed later.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify, to compare with errors.Is. None is worth a retry by the
// sender: answer them with 400 or 401.
var (
	ErrMissingHeader = errors.New("webhook: a signature header is missing")
	ErrTimestamp     = errors.New("webhook: the timestamp is not a time within the tolerance")
	ErrSignature     = errors.New("webhook: no signature matches")
	ErrSecret        = errors.New("webhook: the secret is not whsec_ followed by base64")
)

// Key decodes a signing secret ("whsec_" + base64).
func Key(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(secret), SecretPrefix)
	if !ok {
		return nil, ErrSecret
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) == 0 {
		return nil, ErrSecret
	}
	return key, nil
}

// Sign returns the "v1,<base64>" signature of body for delivery id sent at
// ts, under key.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks that body, with headers h, was signed by one of secrets
// (several are accepted while a secret is rotated) and sent within tolerance
// of now (DefaultTolerance when zero). It returns the delivery's ID, the
// same for every retry of one event: use it to drop duplicates.
func Verify(h http.Header, body []byte, secrets []string, tolerance time.Duration, now time.Time) (string, error) {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return "", ErrMissingHeader
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return "", ErrTimestamp
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return "", ErrTimestamp
	}
	for _, s := range secrets {
		key, err := Key(s)
		if err != nil {
			return "", err
		}
		want := Sign(key, id, ts, body)
		for _, got := range strings.Fields(sigs) {
			if hmac.Equal([]byte(got), []byte(want)) {
				return id, nil
			}
		}
	}
	return "", ErrSignature
}

// Event is the body of a delivery.
type Event struct {
	// ID is the event's ID; Type its kind, e.g. job.succeeded or
	// batch.completed; CreatedAt when the change it reports happened.
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	// Data is the job or batch as the HTTP API shows it (or the lane).
	Data json.RawMessage `json:"data"`
}

// Parse verifies a delivery (as Verify) and decodes its event.
func Parse(h http.Header, body []byte, secrets []string, now time.Time) (*Event, error) {
	if _, err := Verify(h, body, secrets, 0, now); err != nil {
		return nil, err
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("webhook: the body is not an event: %w", err)
	}
	return &e, nil
}
