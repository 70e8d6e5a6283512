package webui

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/auth"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/records/recordstest"
	"github.com/mimoq/mimoq/internal/redistest"
)

const testToken = "ui-test-token-7f3a9c"

type bundle struct {
	ctx    context.Context
	rdb    *redis.Client
	client *enqueue.Client
	store  *dlq.Store
	insp   *asynq.Inspector
	lanes  *lane.Lanes
	srv    *httptest.Server
}

func setup(t testing.TB) *bundle {
	t.Helper()
	rdb := redistest.New(t).Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	b := &bundle{ctx: context.Background(), rdb: rdb, client: c, store: dlq.New(rdb),
		insp: asynq.NewInspectorFromRedisClient(rdb)}
	b.lanes = lane.NewLanes(rdb, b.insp)
	h, err := New(Config{Tokens: auth.NewTokens("other-token", testToken), Client: c, DLQ: b.store, Lanes: b.lanes,
		Redis: rdb, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = httptest.NewServer(h)
	t.Cleanup(b.srv.Close)
	return b
}

// deadBatch submits a batch of n lines for model and kills them all as the
// worker would (terminal 404), returning the batch and job IDs.
func (b *bundle) deadBatch(t testing.TB, n int, model string) (string, []string) {
	t.Helper()
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, `{"custom_id":"req-%d","body":{"model":%q,"messages":[{"role":"user","content":"question %d"}]}}`+"\n", i, model, i)
	}
	bt, err := b.client.SubmitBatch(b.ctx, bytes.NewReader(buf.Bytes()), enqueue.BatchOptions{Source: "questions.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	qname := job.AsynqQueue(enqueue.QueueBatch, model)
	// No feeder runs: the batch's tasks are parked, waiting for their turn.
	tasks, err := b.insp.ListScheduledTasks(qname, asynq.PageSize(n))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ti := range tasks {
		var p job.Payload
		if err := json.Unmarshal(ti.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.BatchID != bt.ID {
			continue
		}
		if err := b.insp.DeleteTask(qname, p.JobID); err != nil {
			t.Fatal(err)
		}
		b.die(t, p)
		ids = append(ids, p.JobID)
	}
	if len(ids) != n {
		t.Fatalf("%d jobs in batch, want %d", len(ids), n)
	}
	return bt.ID, ids
}

// die records a terminal 404 as the worker does.
func (b *bundle) die(t testing.TB, p job.Payload) {
	t.Helper()
	now := time.Now()
	jerr := &enqueue.JobError{StatusCode: 404, Code: "not_found", Message: "The model `" + p.Model + "` does not exist",
		Type: "invalid_request_error", Class: job.ClassTerminal, Reason: "not_found", RequestID: "req_" + p.JobID[20:]}
	entry := &enqueue.Attempt{Attempt: 1, Start: now.UTC(), DurationMs: 87, StatusCode: 404, ErrorCode: "not_found",
		Message: jerr.Message, Class: job.ClassTerminal, Reason: "not_found", RequestID: jerr.RequestID, Worker: "host-1:4242"}
	recordstest.Finish(t, b.rdb, p.JobID, records.Outcome{State: job.StateDead, Counted: true, Entry: entry,
		Error: jerr, StatusCode: 404, RequestID: jerr.RequestID})
}

// browser is an HTTP client that keeps cookies and does not follow
// redirects, so that tests see them.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func (b *bundle) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: b.srv.URL, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (br *browser) do(method, path string, form url.Values, hdr ...string) resp {
	br.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, br.base+path, body)
	if err != nil {
		br.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := br.c.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (br *browser) get(path string) resp { return br.do(http.MethodGet, path, nil) }

func (br *browser) login(token string) resp {
	br.t.Helper()
	return br.do(http.MethodPost, "/ui/login", url.Values{"token": {token}, "next": {"/ui/dlq"}})
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (br *browser) csrf(page string) string {
	br.t.Helper()
	r := br.get(page)
	m := csrfRE.FindStringSubmatch(r.body)
	if m == nil {
		br.t.Fatalf("no CSRF token on %s (%d)", page, r.status)
	}
	return m[1]
}

func TestUnauthenticatedSeesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ids := b.deadBatch(t, 2, "mimo-v2.6-flash")
	br := b.browser(t)
	for _, p := range []string{"/ui", "/ui/", "/ui/dlq", "/ui/dlq/" + ids[0], "/ui/batches", "/ui/lanes", "/ui/nope", "/monitoring", "/monitoring/queues"} {
		r := br.get(p)
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/ui/login?next=") {
			t.Errorf("GET %s: %d %s, want a redirect to the login form", p, r.status, r.header.Get("Location"))
		}
		if strings.Contains(r.body, ids[1]) || strings.Contains(r.body, "mimo-v2.6-flash") || strings.Contains(r.body, "not_found") {
			t.Errorf("GET %s shows data to a stranger: %s", p, r.body)
		}
	}
	if r := br.get("/monitoring/api/queues"); r.status != http.StatusUnauthorized || strings.Contains(r.body, "mimo") {
		t.Errorf("asynqmon API without a session: %d %s", r.status, r.body)
	}
	form := br.get("/ui/login?next=%2Fui%2Fdlq")
	if form.status != http.StatusOK || !strings.Contains(form.body, `type="password"`) || strings.Contains(form.body, ids[0]) {
		t.Errorf("login form: %d %s", form.status, form.body)
	}
	for _, path := range []string{"/ui/dlq/requeue", "/ui/dlq/delete", "/ui/lanes/mimo-v2.6-flash/pause"} {
		r := br.do(http.MethodPost, path, url.Values{"one": {ids[0]}, "all": {"1"}, "confirm": {"1"}})
		if r.status != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d", path, r.status)
		}
	}
	if n, _ := b.store.Count(b.ctx, dlq.Filter{}); n != 2 {
		t.Errorf("%d dead letters after unauthenticated POSTs, want 2", n)
	}
	// A wrong token, a forged cookie and an expired one are refused.
	if r := br.login("not-a-token"); r.status != http.StatusUnauthorized || r.header.Get("Set-Cookie") != "" {
		t.Errorf("login with a wrong token: %d, cookie %q", r.status, r.header.Get("Set-Cookie"))
	}
	_, forged := newSession("some-other-token", time.Now(), time.Hour)
	_, expired := newSession(testToken, time.Now().Add(-2*time.Hour), time.Hour)
	for name, v := range map[string]string{"forged": forged, "expired": expired, "garbage": "a.b", "tampered": tamper(t, testToken)} {
		r := br.do(http.MethodGet, "/ui/dlq", nil, "Cookie", cookieName+"="+v)
		if r.status != http.StatusSeeOther {
			t.Errorf("%s cookie let in: %d", name, r.status)
		}
	}
	if r := br.do(http.MethodGet, "/ui/dlq", nil, "Authorization", "Bearer wrong"); r.status != http.StatusUnauthorized {
		t.Errorf("wrong bearer token: %d", r.status)
	}
}

// tamper returns a valid session cookie with a later expiry but the old MAC.
func tamper(t testing.TB, tok string) string {
	_, v := newSession(tok, time.Now(), time.Hour)
	p64, m64, _ := strings.Cut(v, ".")
	p, _ := base64Decode(p64)
	p = strings.Replace(p, "|1", "|2", 1)
	return base64Encode(p) + "." + m64
}

func TestSignInRequeueAndSignOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	batch, ids := b.deadBatch(t, 3, "mimo-v2.6-flash")
	br := b.browser(t)

	r := br.login(testToken)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/ui/dlq" {
		t.Fatalf("login: %d %q", r.status, r.header.Get("Location"))
	}
	ck := r.header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Errorf("session cookie %q lacks %s", ck, want)
		}
	}
	if strings.Contains(ck, testToken) {
		t.Error("the session cookie holds the token")
	}

	list := br.get("/ui/dlq?batch=" + batch)
	if list.status != http.StatusOK {
		t.Fatalf("dlq page: %d %s", list.status, list.body)
	}
	for _, id := range ids {
		if !strings.Contains(list.body, id) {
			t.Errorf("dlq page lacks %s", id)
		}
	}
	if strings.Contains(list.body, testToken) {
		t.Error("a page shows the token")
	}
	detail := br.get("/ui/dlq/" + ids[0])
	for _, want := range []string{"not_found", "404", "question", "host-1:4242", "req-"} {
		if !strings.Contains(detail.body, want) {
			t.Errorf("detail page lacks %q", want)
		}
	}

	// A POST without the CSRF token, or from another site, changes nothing.
	csrf := br.csrf("/ui/dlq")
	if r := br.do(http.MethodPost, "/ui/dlq/requeue", url.Values{"one": {ids[0]}}); r.status != http.StatusForbidden {
		t.Errorf("requeue without CSRF token: %d", r.status)
	}
	if r := br.do(http.MethodPost, "/ui/dlq/requeue", url.Values{"one": {ids[0]}, "csrf": {csrf}},
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("cross-site requeue: %d", r.status)
	}
	if n, _ := b.store.Count(b.ctx, dlq.Filter{}); n != 3 {
		t.Fatalf("%d dead letters after refused POSTs, want 3", n)
	}

	r = br.do(http.MethodPost, "/ui/dlq/requeue", url.Values{"one": {ids[0]}, "csrf": {csrf}, "batch": {batch}},
		"Origin", b.srv.URL, "Sec-Fetch-Site", "same-origin")
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Location"), "done=requeued") {
		t.Fatalf("requeue: %d %q %s", r.status, r.header.Get("Location"), r.body)
	}
	if _, err := b.store.Get(b.ctx, ids[0]); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("requeued job is still a dead letter: %v", err)
	}
	if j, err := b.client.Get(b.ctx, ids[0]); err != nil || j.State != enqueue.StateQueued {
		t.Errorf("requeued job: %+v, %v; want queued", j, err)
	}
	if flash := br.get(r.header.Get("Location")); !strings.Contains(flash.body, "Requeued 1 dead letter") {
		t.Errorf("no confirmation after requeue")
	}

	// Delete all matching goes through a confirmation page.
	r = br.do(http.MethodPost, "/ui/dlq/delete", url.Values{"all": {"1"}, "batch": {batch}, "csrf": {csrf}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Delete 2 dead letters?") {
		t.Fatalf("delete all: %d, want a confirmation page:\n%s", r.status, r.body)
	}
	if n, _ := b.store.Count(b.ctx, dlq.Filter{}); n != 2 {
		t.Fatalf("confirmation page changed something: %d dead letters", n)
	}
	r = br.do(http.MethodPost, "/ui/dlq/delete", url.Values{"all": {"1"}, "confirm": {"1"}, "batch": {batch}, "csrf": {csrf}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("confirmed delete: %d %s", r.status, r.body)
	}
	if n, _ := b.store.Count(b.ctx, dlq.Filter{}); n != 0 {
		t.Errorf("%d dead letters after delete all", n)
	}

	// Lanes: pause and resume.
	r = br.do(http.MethodPost, "/ui/lanes/mimo-v2.6-pro/pause", url.Values{"reason": {"key rotation"}, "csrf": {csrf}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	if st, _ := b.lanes.State(b.ctx, "mimo-v2.6-pro"); st.Status != lane.StatusPaused || st.Reason != "key rotation" {
		t.Errorf("lane after pause: %+v", st)
	}
	if page := br.get("/ui/lanes"); !strings.Contains(page.body, "key rotation") || !strings.Contains(page.body, "/ui/lanes/mimo-v2.6-pro/resume") {
		t.Errorf("lanes page does not show the pause")
	}
	br.do(http.MethodPost, "/ui/lanes/mimo-v2.6-pro/resume", url.Values{"csrf": {csrf}})
	if st, _ := b.lanes.State(b.ctx, "mimo-v2.6-pro"); st.Status != lane.StatusRunning {
		t.Errorf("lane after resume: %+v", st)
	}
	// A batch waiting for its turn (no worker feeds it here) is shown
	// with its backlog in the lane's shares and on its own page.
	waiting, err := b.client.SubmitBatch(b.ctx, strings.NewReader(`{"custom_id":"w1","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}}`+"\n"),
		enqueue.BatchOptions{Tenant: "acme", Weight: 3})
	if err != nil {
		t.Fatal(err)
	}
	if page := br.get("/ui/lanes"); !strings.Contains(page.body, `id="shares"`) || !strings.Contains(page.body, "tenant <code>acme</code>") {
		t.Errorf("lanes page does not show the batch waiting for its turn:\n%s", page.body)
	}
	if page := br.get("/ui/batches/" + waiting.ID); !strings.Contains(page.body, "1 waiting for their turn") || !strings.Contains(page.body, "weight 3, tenant <code>acme</code>") {
		t.Errorf("batch page does not show its backlog and share:\n%s", page.body)
	}

	// Every page renders.
	for _, p := range []string{"/ui", "/ui/batches", "/ui/batches/" + batch, "/ui/lanes", "/ui/dlq?status=404&class=terminal&since=1h"} {
		if r := br.get(p); r.status != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	if r := br.get("/ui/dlq?status=abc"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "status") {
		t.Errorf("bad status filter: %d", r.status)
	}
	// asynqmon is there, read-only.
	if r := br.get("/monitoring/"); r.status != http.StatusOK || !strings.Contains(r.body, "/monitoring") {
		t.Errorf("asynqmon page with a session: %d %.300s", r.status, r.body)
	}
	if r := br.get("/monitoring/api/queues"); r.status != http.StatusOK || !strings.Contains(r.body, "queues") {
		t.Errorf("asynqmon API with a session: %d %s", r.status, r.body)
	}
	if r := br.do(http.MethodPost, "/monitoring/api/queues/batch:mimo-v2.6-flash:pause", nil); r.status != http.StatusForbidden {
		t.Errorf("asynqmon write in read-only mode: %d", r.status)
	}

	// Sign out: the cookie is cleared.
	r = br.do(http.MethodPost, "/ui/logout", url.Values{"csrf": {csrf}})
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d %q", r.status, r.header.Get("Set-Cookie"))
	}
	if r := br.get("/ui/dlq"); r.status != http.StatusSeeOther {
		t.Errorf("after logout: %d", r.status)
	}
}

func TestSessionFromAnotherReplicaAndTokenRemoval(t *testing.T) {
	t.Parallel()
	b := setup(t)
	br := b.browser(t)
	br.login(testToken)
	u, _ := url.Parse(b.srv.URL)
	cookies := br.c.Jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("cookies: %v", cookies)
	}
	for _, tc := range []struct {
		tokens []string
		want   int
	}{
		{[]string{testToken}, http.StatusOK},            // another replica, same tokens
		{[]string{"rotated", testToken}, http.StatusOK}, // a token added
		{[]string{"rotated"}, http.StatusSeeOther},      // the token removed: the session ends
	} {
		h, err := New(Config{Tokens: auth.NewTokens(tc.tokens...), Client: b.client, Redis: b.rdb, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/ui/dlq", nil)
		req.AddCookie(cookies[0])
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("tokens %v: %d, want %d", tc.tokens, rec.Code, tc.want)
		}
	}
	// A bearer token works without a session.
	if r := br.do(http.MethodGet, "/ui/dlq", nil, "Authorization", "Bearer "+testToken, "Cookie", ""); r.status != http.StatusOK {
		t.Errorf("bearer: %d", r.status)
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/ui/dlq?batch=x": "/ui/dlq?batch=x", "/monitoring": "/monitoring", "": "/ui",
		"//evil.example/ui": "/ui", "https://evil.example": "/ui", "/ui/login": "/ui", "/ui\\@evil": "/ui",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func base64Encode(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func base64Decode(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err
}

// TestRequeueAllWithNewModel: "Requeue all" with a new model goes through
// the confirmation page, which names the model, and rewrites the requests;
// a model the queue does not accept is refused, changing nothing.
func TestRequeueAllWithNewModel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	batch, ids := b.deadBatch(t, 2, "mimo-v2.6-flash")
	br := b.browser(t)
	br.login(testToken)
	csrf := br.csrf("/ui/dlq")
	if page := br.get("/ui/dlq"); !strings.Contains(page.body, `name="set_model"`) {
		t.Fatal("dlq page has no field for a new model")
	}
	form := url.Values{"all": {"1"}, "batch": {batch}, "csrf": {csrf}, "set_model": {"no-such-model"}}
	if r := br.do(http.MethodPost, "/ui/dlq/requeue", form); r.status != http.StatusBadRequest ||
		!strings.Contains(r.body, "mimo-v2.6-pro") {
		t.Fatalf("unknown new model: %d %s", r.status, r.body)
	}
	form.Set("set_model", "mimo-v2.6-pro")
	r := br.do(http.MethodPost, "/ui/dlq/requeue", form)
	if r.status != http.StatusOK || !strings.Contains(r.body, "rewritten to <code>mimo-v2.6-pro</code>") ||
		!strings.Contains(r.body, `name="set_model" value="mimo-v2.6-pro"`) {
		t.Fatalf("confirmation page: %d %s", r.status, r.body)
	}
	form.Set("confirm", "1")
	if r := br.do(http.MethodPost, "/ui/dlq/requeue", form); r.status != http.StatusSeeOther {
		t.Fatalf("confirmed requeue: %d %s", r.status, r.body)
	}
	for _, id := range ids {
		j, err := b.client.Get(b.ctx, id)
		if err != nil || j.State != enqueue.StateQueued || j.Model != "mimo-v2.6-pro" {
			t.Errorf("job %s after the requeue: %+v, %v", id, j, err)
		}
	}
}
