package webui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/webhooks"
)

// TestWebhookPages: the deliveries list (filtered by state), one delivery
// with its body, and a resend that makes it pending again with a task.
func TestWebhookPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store := webhooks.NewStore(b.rdb, time.Hour)
	ev := webhooks.Envelope{ID: "evt_1", Type: "job.dead", CreatedAt: time.Now(), Data: json.RawMessage(`{"id":"J1"}`)}
	if err := store.Create(b.ctx, []webhooks.NewDelivery{{Event: ev, URL: "https://hooks.example/in", Source: "job"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	id := webhooks.DeliveryID(ev.ID, "https://hooks.example/in")
	br := b.browser(t)
	br.login(testToken)

	for _, tc := range []struct {
		path string
		want []string
		not  []string
	}{
		{"/ui/webhooks", []string{id, "job.dead", "hooks.example/in", "pending"}, nil},
		{"/ui/webhooks?state=pending", []string{id}, nil},
		{"/ui/webhooks?state=delivered", []string{"No deliveries in state delivered"}, []string{id}},
		{"/ui/webhooks/" + id, []string{"evt_1", "Not tried yet", "&#34;id&#34;:&#34;J1&#34;", "Send again"}, nil},
	} {
		r := br.get(tc.path)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.path, r.status, r.body)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("%s lacks %q", tc.path, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(r.body, w) {
				t.Errorf("%s shows %q", tc.path, w)
			}
		}
	}
	if r := br.get("/ui/webhooks?state=bogus"); r.status != http.StatusBadRequest {
		t.Errorf("unknown state: %d", r.status)
	}
	if r := br.get("/ui/webhooks/msg_nope"); r.status != http.StatusNotFound {
		t.Errorf("unknown delivery: %d", r.status)
	}

	csrf := br.csrf("/ui/webhooks/" + id)
	r := br.do(http.MethodPost, "/ui/webhooks/"+id+"/resend", url.Values{"csrf": {csrf}}, "Origin", b.srv.URL)
	if r.status != http.StatusSeeOther {
		t.Fatalf("resend: %d %s", r.status, r.body)
	}
	if d, err := store.Get(b.ctx, id); err != nil || d.State != webhooks.StatePending {
		t.Errorf("after resend: %+v, %v", d, err)
	}
	if r := br.do(http.MethodPost, "/ui/webhooks/"+id+"/resend", url.Values{"csrf": {"forged"}}, "Origin", b.srv.URL); r.status != http.StatusForbidden {
		t.Errorf("resend without the CSRF token: %d", r.status)
	}
}
