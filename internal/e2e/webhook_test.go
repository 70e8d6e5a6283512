package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
)

// The webhook tests run a receiver on 127.0.0.1 (plain HTTP on loopback,
// allowed for them by MIMOQ_WEBHOOK_ALLOW_HTTP and _ALLOW_HOSTS) and check
// what it got with a verifier written here from the Standard Webhooks
// spec, not with mimoq's own helper.

// testSecretKey is the key of testSecret.
var testSecretKey = []byte("mimoq-e2e-webhook-signing-key-32")

var testSecret = "whsec_" + base64.StdEncoding.EncodeToString(testSecretKey)

// hook is one request the receiver got.
type hook struct {
	ID, Timestamp, Signature string
	Body                     []byte
	Event                    struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
}

// verified checks h's signature as the spec says: base64 of HMAC-SHA256
// over "id.timestamp.body", one of the space-separated "v1,…" entries.
func (h hook) verified(key []byte) bool {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.ID + "." + h.Timestamp + "."))
	mac.Write(h.Body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(h.Signature) {
		if v, sig, ok := strings.Cut(s, ","); ok && v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// receiver records webhooks; answer decides each status (nil: 200).
type receiver struct {
	t      *testing.T
	mu     sync.Mutex
	got    []hook
	answer func(n int) int
	srv    *http.Server
	addr   string
}

func startReceiver(t *testing.T, addr string, answer func(n int) int) *receiver {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, answer: answer, addr: ln.Addr().String()}
	rc.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := hook{ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
			Signature: r.Header.Get("webhook-signature"), Body: body}
		_ = json.Unmarshal(body, &h.Event)
		rc.mu.Lock()
		rc.got = append(rc.got, h)
		n := len(rc.got)
		rc.mu.Unlock()
		status := http.StatusOK
		if rc.answer != nil {
			status = rc.answer(n)
		}
		w.WriteHeader(status)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	t.Cleanup(rc.stop)
	return rc
}

func (rc *receiver) stop() { _ = rc.srv.Close() }

func (rc *receiver) url() string { return "http://" + rc.addr + "/hook" }

func (rc *receiver) hooks() []hook {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hook(nil), rc.got...)
}

// webhookEnv lets the fleet call the loopback receiver and sign with
// testSecret.
var webhookEnv = []string{"MIMOQ_WEBHOOK_SECRET=" + testSecret, "MIMOQ_WEBHOOK_ALLOW_HTTP=true",
	"MIMOQ_WEBHOOK_ALLOW_HOSTS=127.0.0.1"}

func writeBatchFile(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		b.WriteString(`{"custom_id":"r` + string(rune('a'+i)) + `","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}}` + "\n")
	}
	p := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWebhookBatchCompletedOnceSigned: a batch submitted with --webhook
// gets exactly one batch.completed event, signed as Standard Webhooks
// says; a fleet endpoint filtered to lane events gets the lane's pause and
// resume, and no job events.
func TestWebhookBatchCompletedOnceSigned(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.env = append(f.env, webhookEnv...)
	batchHook := startReceiver(t, "", nil)
	fleetHook := startReceiver(t, "", nil)
	f.env = append(f.env, "MIMOQ_WEBHOOK_URLS="+fleetHook.url()+"=lane.*")
	f.startWorker()

	stdout, stderr, code := f.run("batch", "submit", writeBatchFile(t, 3), "--webhook", batchHook.url())
	if code != 0 {
		t.Fatalf("batch submit: %d %s", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	Eventually(t, 30*time.Second, "the batch.completed event", func() bool { return len(batchHook.hooks()) >= 1 })
	if _, stderr, code := f.run("lane", "pause", "mimo-v2.6-pro"); code != 0 {
		t.Fatalf("lane pause: %s", stderr)
	}
	Eventually(t, 30*time.Second, "the lane.paused event", func() bool { return len(fleetHook.hooks()) >= 1 })
	if _, stderr, code := f.run("lane", "resume", "mimo-v2.6-pro"); code != 0 {
		t.Fatalf("lane resume: %s", stderr)
	}
	Eventually(t, 30*time.Second, "the lane.resumed event", func() bool { return len(fleetHook.hooks()) >= 2 })
	time.Sleep(3 * time.Second) // time for a duplicate to show up

	got := batchHook.hooks()
	if len(got) != 1 {
		t.Fatalf("the batch's webhook got %d requests, want exactly 1: %+v", len(got), got)
	}
	h := got[0]
	if !h.verified(testSecretKey) {
		t.Errorf("signature %q of %q does not verify", h.Signature, h.Body)
	}
	if ts, err := time.Parse(time.RFC3339, time.Unix(atoi64(h.Timestamp), 0).Format(time.RFC3339)); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("webhook-timestamp %q is not a recent Unix time", h.Timestamp)
	}
	var b enqueue.Batch
	if err := json.Unmarshal(h.Event.Data, &b); err != nil {
		t.Fatal(err)
	}
	if h.Event.Type != "batch.completed" || b.ID != id || b.Succeeded != 3 || h.Event.ID == "" || !strings.HasPrefix(h.ID, "msg_") {
		t.Errorf("event %s %s, batch %+v", h.Event.Type, h.Event.ID, b)
	}
	var types []string
	for _, h := range fleetHook.hooks() {
		types = append(types, h.Event.Type)
		if !h.verified(testSecretKey) {
			t.Errorf("fleet event %s does not verify", h.Event.Type)
		}
	}
	if strings.Join(types, ",") != "lane.paused,lane.resumed" {
		t.Errorf("the fleet endpoint (lane.* only) got %v", types)
	}
	if out, _, code := f.run("webhook", "list", "--json"); code != 0 || strings.Count(out, `"state":"delivered"`) != 3 {
		t.Errorf("webhook list: %d\n%s", code, out)
	}
}

func atoi64(s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// TestWebhookRetriedUntilTheReceiverAccepts: a receiver that answers 500
// twice, then 200, gets the job's event on the third try, with the same
// webhook-id each time; `webhook show` lists the three attempts.
func TestWebhookRetriedUntilTheReceiverAccepts(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.env = append(f.env, webhookEnv...)
	rc := startReceiver(t, "", func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	f.startWorker()
	stdout, stderr, code := f.run("submit", "--model", "mimo-v2.6-flash", "--prompt", "hi", "--webhook", rc.url(),
		"--webhook-include-result")
	if code != 0 {
		t.Fatalf("submit: %d %s", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	Eventually(t, 60*time.Second, "the third try", func() bool { return len(rc.hooks()) >= 3 })
	time.Sleep(2 * time.Second)
	got := rc.hooks()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3", len(got))
	}
	for _, h := range got {
		if h.ID != got[0].ID || h.Event.Type != "job.succeeded" || !h.verified(testSecretKey) {
			t.Errorf("try %+v: want the same webhook-id, job.succeeded, verified", h.ID)
		}
	}
	var j enqueue.Job
	if err := json.Unmarshal(got[2].Event.Data, &j); err != nil || j.ID != id || len(j.Result) == 0 || j.Request != nil {
		t.Errorf("event data %s: want the job with its result (asked for), without its request", got[2].Event.Data)
	}
	out, _, code := f.run("webhook", "show", got[0].ID)
	if code != 0 || !strings.Contains(out, "delivered") || strings.Count(out, " 500 ") != 2 || !strings.Contains(out, " 200 ") {
		t.Errorf("webhook show: %d\n%s", code, out)
	}
}

// TestWebhookSurvivesReceiverOutageAndWorkerKill: while the receiver is
// down, jobs finish and their events wait; the worker is killed (SIGKILL)
// meanwhile; once the receiver is back and another worker runs, every
// event arrives, duplicates only with the same webhook-id.
func TestWebhookSurvivesReceiverOutageAndWorkerKill(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.env = append(f.env, webhookEnv...)
	rc := startReceiver(t, "", nil)
	addr := rc.addr
	rc.stop() // down: connections refused
	url := "http://" + addr + "/hook"
	w := f.startWorker()
	var ids []string
	for range 5 {
		stdout, stderr, code := f.run("submit", "--model", "mimo-v2.6-flash", "--prompt", "hi", "--webhook", url)
		if code != 0 {
			t.Fatalf("submit: %d %s", code, stderr)
		}
		ids = append(ids, strings.TrimSpace(stdout))
	}
	f.waitFinal(ids, 30*time.Second)
	Eventually(t, 30*time.Second, "a failed try of every delivery", func() bool {
		out, _, _ := f.run("webhook", "list", "--json", "--state", "pending")
		return strings.Count(out, `"attempts":[`) == 5
	})
	w.Signal(syscall.SIGKILL)
	w.Wait(10 * time.Second)

	back := startReceiver(t, addr, nil)
	f.startWorker()
	Eventually(t, 150*time.Second, "every event after the outage", func() bool {
		seen := map[string]bool{}
		for _, h := range back.hooks() {
			seen[h.ID] = true
		}
		return len(seen) == 5
	})
	jobs := map[string]string{} // job ID → webhook-id
	for _, h := range back.hooks() {
		var j enqueue.Job
		if err := json.Unmarshal(h.Event.Data, &j); err != nil {
			t.Fatal(err)
		}
		if prev, ok := jobs[j.ID]; ok && prev != h.ID {
			t.Errorf("job %s told twice under different webhook-ids %s and %s", j.ID, prev, h.ID)
		}
		jobs[j.ID] = h.ID
	}
	for _, id := range ids {
		if _, ok := jobs[id]; !ok {
			t.Errorf("no event for job %s", id)
		}
	}
}

// TestWebhookTargetsAreChecked: a webhook on a private or loopback address,
// or over plain http, is refused at submit with a clear error, nothing
// enqueued; so is a bad MIMOQ_WEBHOOK_URLS, naming the variable.
func TestWebhookTargetsAreChecked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "--model", "mimo-v2.6-flash", "--prompt", "hi", "--webhook", "https://10.1.2.3/hook"}, "not a public address"},
		{[]string{"submit", "--model", "mimo-v2.6-flash", "--prompt", "hi", "--webhook", "https://127.0.0.1:9/hook"}, "not a public address"},
		{[]string{"submit", "--model", "mimo-v2.6-flash", "--prompt", "hi", "--webhook", "http://example.com/hook"}, "plain http"},
		{[]string{"batch", "submit", writeBatchFile(t, 1), "--webhook", "https://169.254.169.254/latest"}, "not a public address"},
	} {
		_, stderr, code := f.run(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if n := len(f.queueKeys()); n != 0 {
		t.Errorf("refused submits wrote %d keys", n)
	}
	_, stderr, code := f.runEnv([]string{"MIMOQ_WEBHOOK_URLS=ftp://x.example/hook"}, "stats")
	if code != 2 || !strings.Contains(stderr, "MIMOQ_WEBHOOK_URLS") {
		t.Errorf("bad MIMOQ_WEBHOOK_URLS: exit %d, %q", code, stderr)
	}
}
