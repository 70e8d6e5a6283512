package webhook_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue/webhook"
)

// The Standard Webhooks specification's own test vector.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesTheSpec(t *testing.T) {
	t.Parallel()
	key, err := webhook.Key(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := webhook.Sign(key, specID, time.Unix(specTS, 0), []byte(specBody)); got != specSig {
		t.Errorf("Sign = %s, want the spec's %s", got, specSig)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(specTS, 0).Add(time.Minute)
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key"))
	headers := func(id, ts, sig string) http.Header {
		h := http.Header{}
		for k, v := range map[string]string{webhook.HeaderID: id, webhook.HeaderTimestamp: ts, webhook.HeaderSignature: sig} {
			if v != "" {
				h.Set(k, v)
			}
		}
		return h
	}
	for _, tc := range []struct {
		name    string
		h       http.Header
		body    string
		secrets []string
		now     time.Time
		want    error
	}{
		{"valid", headers(specID, "1614265330", specSig), specBody, []string{specSecret}, now, nil},
		{"one of several signatures", headers(specID, "1614265330", "v1,bm9wZQ== "+specSig), specBody, []string{specSecret}, now, nil},
		{"during a rotation: the old secret still verifies", headers(specID, "1614265330", specSig), specBody, []string{other, specSecret}, now, nil},
		{"tampered body", headers(specID, "1614265330", specSig), `{"test": 2432232315}`, []string{specSecret}, now, webhook.ErrSignature},
		{"wrong secret", headers(specID, "1614265330", specSig), specBody, []string{other}, now, webhook.ErrSignature},
		{"another id", headers("msg_other", "1614265330", specSig), specBody, []string{specSecret}, now, webhook.ErrSignature},
		{"too old", headers(specID, "1614265330", specSig), specBody, []string{specSecret}, now.Add(time.Hour), webhook.ErrTimestamp},
		{"from the future", headers(specID, "1614265330", specSig), specBody, []string{specSecret}, now.Add(-time.Hour), webhook.ErrTimestamp},
		{"timestamp not a number", headers(specID, "soon", specSig), specBody, []string{specSecret}, now, webhook.ErrTimestamp},
		{"no signature", headers(specID, "1614265330", ""), specBody, []string{specSecret}, now, webhook.ErrMissingHeader},
		{"no id", headers("", "1614265330", specSig), specBody, []string{specSecret}, now, webhook.ErrMissingHeader},
		{"a secret without its prefix", headers(specID, "1614265330", specSig), specBody, []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, now, webhook.ErrSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := webhook.Verify(tc.h, []byte(tc.body), tc.secrets, 0, tc.now)
			if !errors.Is(err, tc.want) || (err == nil && id != specID) {
				t.Errorf("Verify = %q, %v; want %v", id, err, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	key, _ := webhook.Key(specSecret)
	body := []byte(`{"id":"evt_1","type":"job.succeeded","created_at":"2026-12-02T10:00:00Z","data":{"id":"J","state":"succeeded"}}`)
	ts := time.Unix(1790000000, 0)
	h := http.Header{}
	h.Set(webhook.HeaderID, "dlv_1")
	h.Set(webhook.HeaderTimestamp, "1790000000")
	h.Set(webhook.HeaderSignature, webhook.Sign(key, "dlv_1", ts, body))
	e, err := webhook.Parse(h, body, []string{specSecret}, ts)
	if err != nil || e.Type != "job.succeeded" || string(e.Data) != `{"id":"J","state":"succeeded"}` {
		t.Errorf("Parse = %+v, %v", e, err)
	}
}
