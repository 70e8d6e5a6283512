package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/auth"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/records/recordstest"
	"github.com/mimoq/mimoq/internal/redistest"
	"github.com/mimoq/mimoq/internal/server"
)

const (
	tokenA = "tok-alpha-0123456789"
	tokenB = "tok-bravo-9876543210"
)

// bundle is one test's world: a private Redis, a producer client, and the
// server under test behind an httptest.Server.
type bundle struct {
	t      *testing.T
	redis  *redistest.Server
	rdb    *redis.Client
	client *enqueue.Client
	store  *dlq.Store
	url    string       // the server's base URL
	hc     *http.Client // a client of it
}

func setup(t *testing.T, mod ...func(*server.Config)) *bundle {
	t.Helper()
	b := &bundle{t: t, redis: redistest.New(t)}
	b.rdb = b.redis.Client()
	var err error
	b.client, err = enqueue.NewClient(enqueue.ClientConfig{Redis: b.rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.client.Close() })
	b.store = dlq.New(b.rdb)
	cfg := server.Config{
		Tokens: auth.NewTokens(tokenA, tokenB), Client: b.client, Redis: b.rdb, DLQ: b.store,
		Registry: prometheus.NewRegistry(), SpoolDir: t.TempDir(),
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	b.url, b.hc = srv.URL, srv.Client()
	return b
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with token as bearer token ("" for none).
func (b *bundle) do(method, path, token string, body io.Reader) response {
	b.t.Helper()
	req, err := http.NewRequest(method, b.url+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

func (b *bundle) get(path string) response { return b.do(http.MethodGet, path, tokenA, nil) }
func (b *bundle) post(path, body string) response {
	return b.do(http.MethodPost, path, tokenA, strings.NewReader(body))
}

// decode unmarshals the body of r, which must have status want.
func decode[T any](t *testing.T, r response, want int) T {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// apiError is the error shape.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param"`
}

// wantError checks that r is an error of status and code in the MiMo shape
// ({"error":{"code","message","type"}}, nothing else) and returns it.
func wantError(t *testing.T, r response, status int, code string) apiError {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &top); err != nil || len(top) != 1 || top["error"] == nil {
		t.Fatalf("error body %s is not {\"error\": {…}}", r.body)
	}
	var fields map[string]any
	_ = json.Unmarshal(top["error"], &fields)
	for k := range fields {
		if !slices.Contains([]string{"code", "message", "type", "param"}, k) {
			t.Errorf("error body has field %q: %s", k, r.body)
		}
	}
	var e apiError
	if err := json.Unmarshal(top["error"], &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != code || e.Type != "error" || e.Message == "" {
		t.Fatalf("error %+v, want code %q, type error and a message", e, code)
	}
	return e
}

const chatBody = `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}]}`

func jobEnvelope(body string) string { return `{"body":` + body + `}` }

// submit posts one valid job and returns its ID.
func (b *bundle) submit() string {
	b.t.Helper()
	r := b.post("/v1/jobs", jobEnvelope(chatBody))
	return decode[map[string]string](b.t, r, http.StatusAccepted)["id"]
}

// finish ends job id in state st as a worker would, and announces it.
func (b *bundle) finish(id string, st enqueue.State) {
	b.t.Helper()
	o := records.Outcome{State: st, Counted: true}
	switch st {
	case enqueue.StateSucceeded:
		o.Result = json.RawMessage(`{"id":"r","choices":[{"index":0,"message":{"role":"assistant","content":"hello <b>"}}]}`)
		o.StatusCode = 200
		o.RequestID = "req-" + id
	case enqueue.StateDead:
		o.StatusCode = 400
		o.Error = &enqueue.JobError{StatusCode: 400, Code: "invalid_request", Message: "bad", Class: job.ClassTerminal}
		o.ErrorBody = json.RawMessage(`{"error":{"code":"invalid_request","message":"bad","type":"error"}}`)
	}
	recordstest.Finish(b.t, b.rdb, id, o)
}

// routes lists one request for every authenticated route.
var routes = []struct{ method, path, body string }{
	{"POST", "/v1/jobs", jobEnvelope(chatBody)},
	{"GET", "/v1/jobs/01JOB", ""},
	{"GET", "/v1/jobs/01JOB?wait=1s", ""},
	{"POST", "/v1/batches", `{"custom_id":"a","body":` + chatBody + "}\n"},
	{"GET", "/v1/batches", ""},
	{"GET", "/v1/batches/b1", ""},
	{"GET", "/v1/batches/b1/results", ""},
	{"POST", "/v1/batches/b1/cancel", ""},
	{"GET", "/v1/dlq", ""},
	{"GET", "/v1/dlq/01JOB", ""},
	{"POST", "/v1/dlq/requeue", `{"all":true}`},
	{"GET", "/metrics", ""},
	{"GET", "/v1/nothing-here", ""},
	{"DELETE", "/v1/jobs/01JOB", ""},
}

func TestAuthRequiredOnEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, rt := range routes {
		for _, tc := range []struct{ name, header string }{
			{"no header", ""},
			{"wrong token", "Bearer wrong"},
			{"token without scheme", tokenA},
			{"basic scheme", "Basic " + tokenA},
			{"prefix of a token", "Bearer " + tokenA[:len(tokenA)-1]},
			{"token with a suffix", "Bearer " + tokenA + "x"},
			{"two tokens", "Bearer " + tokenA + "," + tokenB},
			{"empty bearer", "Bearer "},
		} {
			req, _ := http.NewRequest(rt.method, b.url+rt.path, strings.NewReader(rt.body))
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := b.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := response{status: resp.StatusCode, header: resp.Header, body: body}
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: status %d, want 401: %s", rt.method, rt.path, tc.name, r.status, body)
				continue
			}
			e := wantError(t, r, http.StatusUnauthorized, "authentication_failed")
			if e.Message != "Invalid or missing bearer token." {
				t.Errorf("401 message %q", e.Message)
			}
			if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want Bearer", got)
			}
			if bytes.Contains(body, []byte(tokenA)) {
				t.Errorf("401 answer echoes the token: %s", body)
			}
		}
	}
	// Nothing was enqueued by the refused requests.
	n, err := b.rdb.Keys(context.Background(), "mimoq:job:*").Result()
	if err != nil || len(n) != 0 {
		t.Errorf("refused requests left job records %v (%v)", n, err)
	}
}

func TestAuthAcceptsEveryTokenInConstantTimeSet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, header := range []string{"Bearer " + tokenA, "Bearer " + tokenB, "bearer " + tokenA, "BEARER  " + tokenB + " "} {
		req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/batches", nil)
		req.Header.Set("Authorization", header)
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization %q: status %d, want 200", header, resp.StatusCode)
		}
	}
}

func TestNewRefusesNoTokens(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: r.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tok := range []auth.Tokens{{}, auth.NewTokens("", "  ")} {
		if _, err := server.New(server.Config{Tokens: tok, Client: c, Redis: r.Client()}); err == nil ||
			!strings.Contains(err.Error(), "Tokens") {
			t.Errorf("New with no tokens: err %v, want a refusal naming Tokens", err)
		}
	}
	if _, err := server.New(server.Config{Tokens: auth.NewTokens("t"), Client: c, Redis: r.Client(), MaxWait: time.Minute, WriteTimeout: time.Second}); err == nil {
		t.Error("New with WriteTimeout below MaxWait: no error")
	}
}

func TestHealthAndReadyNeedNoToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		r := b.do(http.MethodGet, p, "", nil)
		if got := decode[map[string]string](t, r, http.StatusOK); got["status"] != "ok" {
			t.Errorf("%s: %s", p, r.body)
		}
	}
	b.redis.Kill()
	wantError(t, b.do(http.MethodGet, "/readyz", "", nil), http.StatusServiceUnavailable, "service_unavailable")
	if r := b.do(http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Errorf("healthz with Redis down: %d, want 200 (alive)", r.status)
	}
	// A route that needs Redis says so with 503, not 500.
	e := wantError(t, b.get("/v1/jobs/01ABC"), http.StatusServiceUnavailable, "service_unavailable")
	if !strings.Contains(e.Message, "Redis") {
		t.Errorf("503 message %q does not name Redis", e.Message)
	}
	wantError(t, b.post("/v1/jobs", jobEnvelope(chatBody)), http.StatusServiceUnavailable, "service_unavailable")
}

func TestUnknownRouteAndMethodInErrorShape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wantError(t, b.get("/v1/nothing-here"), http.StatusNotFound, "not_found")
	wantError(t, b.get("/ui"), http.StatusNotFound, "not_found") // no UI configured
	r := b.do(http.MethodDelete, "/v1/jobs/01ABC", tokenA, nil)
	wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("405 Allow %q, want GET", allow)
	}
	wantError(t, b.get("/v1/jobs"), http.StatusMethodNotAllowed, "method_not_allowed")
	if r.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
}

func TestPanicIsRecoveredAs500(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *server.Config) {
		c.UI = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	})
	// The UI does its own auth: no token needed to reach it.
	r := b.do(http.MethodGet, "/ui/anything", "", nil)
	e := wantError(t, r, http.StatusInternalServerError, "internal_error")
	if strings.Contains(e.Message, "boom") || !strings.Contains(e.Message, r.header.Get("X-Request-Id")) {
		t.Errorf("500 message %q: want the request ID and not the panic", e.Message)
	}
	// The server goes on serving.
	if r := b.do(http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Errorf("healthz after a panic: %d", r.status)
	}
}

func TestSubmitAndGetJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.post("/v1/jobs", jobEnvelope(chatBody))
	got := decode[map[string]string](t, r, http.StatusAccepted)
	id := got["id"]
	if id == "" || len(got) != 1 {
		t.Fatalf("submit answer %s, want {\"id\": …}", r.body)
	}
	if loc := r.header.Get("Location"); loc != "/v1/jobs/"+id {
		t.Errorf("Location %q", loc)
	}
	j := decode[enqueue.Job](t, b.get("/v1/jobs/"+id), http.StatusOK)
	if j.ID != id || j.State != enqueue.StateQueued || j.Queue != enqueue.QueueInteractive || j.Model != "mimo-v2.6-flash" {
		t.Errorf("job %+v", j)
	}

	// The body reaches the queue unchanged (compacted), unknown fields included.
	raw := `{"model":"mimo-v2.6-flash", "messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled"}}`
	id2 := decode[map[string]string](t, b.post("/v1/jobs", `{"queue":"batch","body":`+raw+`}`), http.StatusAccepted)["id"]
	j = decode[enqueue.Job](t, b.get("/v1/jobs/"+id2), http.StatusOK)
	if j.Queue != enqueue.QueueBatch {
		t.Errorf("queue %q, want batch", j.Queue)
	}
	tasks, err := asynq.NewInspectorFromRedisClient(b.rdb).ListPendingTasks(job.AsynqQueue("batch", "mimo-v2.6-flash"))
	if err != nil || len(tasks) != 1 {
		t.Fatalf("pending batch tasks %v, %v", tasks, err)
	}
	var p job.Payload
	_ = json.Unmarshal(tasks[0].Payload, &p)
	stored, err := records.New(b.rdb, 0).Get(context.Background(), p.JobID, true)
	if err != nil {
		t.Fatal(err)
	}
	if string(stored.Request) != raw {
		t.Errorf("stored body %s, want it byte for byte: %s", stored.Request, raw)
	}

	// Idempotency key: the same job, enqueued once.
	env := `{"idempotency_key":"order-42","body":` + chatBody + `}`
	a := decode[map[string]string](t, b.post("/v1/jobs", env), http.StatusAccepted)["id"]
	c := decode[map[string]string](t, b.post("/v1/jobs", env), http.StatusAccepted)["id"]
	if a != c {
		t.Errorf("same idempotency key gave jobs %s and %s", a, c)
	}

	e := wantError(t, b.get("/v1/jobs/01NOSUCHJOB"), http.StatusNotFound, "not_found")
	if !strings.Contains(e.Message, "01NOSUCHJOB") {
		t.Errorf("404 message %q does not name the job", e.Message)
	}
}

func TestSubmitJobInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name, body, param, inMessage string
	}{
		{"not JSON", `{"body":`, "", "not valid JSON"},
		{"empty", ``, "", "empty"},
		{"array", `[1]`, "", "JSON object"},
		{"null", `null`, "", "JSON object"},
		{"unknown envelope field", `{"body":` + chatBody + `,"idempotency":"k"}`, "idempotency", `unknown field "idempotency"`},
		{"chat request without envelope", chatBody, "", `inside "body"`},
		{"missing body", `{"queue":"batch"}`, "body", "body is required"},
		{"null body", `{"body":null}`, "body", "body is required"},
		{"body not an object", `{"body":"hi"}`, "body", "JSON object"},
		{"queue not a string", `{"body":` + chatBody + `,"queue":1}`, "queue", "queue must be a string"},
		{"unknown queue", `{"body":` + chatBody + `,"queue":"fast"}`, "queue", `"fast"`},
		{"key not a string", `{"body":` + chatBody + `,"idempotency_key":true}`, "idempotency_key", "must be a string"},
		{"unknown model", jobEnvelope(`{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`), "body.model", "gpt-9"},
		{"no messages", jobEnvelope(`{"model":"mimo-v2.6-flash","messages":[]}`), "body.messages", "body.messages must not be empty"},
		{"bad role", jobEnvelope(`{"model":"mimo-v2.6-flash","messages":[{"role":"robot","content":"x"}]}`), "body.messages[0].role", "robot"},
		{"temperature", jobEnvelope(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"temperature":3}`), "body.temperature", "0–2"},
		{"stream", jobEnvelope(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"stream":true}`), "body.stream", "stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := wantError(t, b.post("/v1/jobs", tc.body), http.StatusBadRequest, "invalid_request")
			if tc.param != "" && e.Param != tc.param {
				t.Errorf("param %q, want %q", e.Param, tc.param)
			}
			if !strings.Contains(e.Message, tc.inMessage) {
				t.Errorf("message %q does not contain %q", e.Message, tc.inMessage)
			}
		})
	}
	if keys, _ := b.rdb.Keys(context.Background(), "mimoq:job:*").Result(); len(keys) != 0 {
		t.Errorf("invalid submissions left job records %v", keys)
	}
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *server.Config) { c.MaxJobBytes = 1 << 10; c.MaxBatchBytes = 4 << 10 })
	bigJob := jobEnvelope(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"` + strings.Repeat("x", 2<<10) + `"}]}`)
	e := wantError(t, b.post("/v1/jobs", bigJob), http.StatusRequestEntityTooLarge, "request_too_large")
	if !strings.Contains(e.Message, "1 KiB") {
		t.Errorf("413 message %q does not give the limit", e.Message)
	}
	// Without Content-Length (chunked), the limit holds while reading.
	r := b.do(http.MethodPost, "/v1/jobs", tokenA, io.MultiReader(strings.NewReader(bigJob)))
	wantError(t, r, http.StatusRequestEntityTooLarge, "request_too_large")

	var batch strings.Builder
	for i := 0; batch.Len() <= 4<<10; i++ {
		fmt.Fprintf(&batch, `{"custom_id":"r%d","body":%s}`+"\n", i, chatBody)
	}
	wantError(t, b.post("/v1/batches", batch.String()), http.StatusRequestEntityTooLarge, "request_too_large")
	r = b.do(http.MethodPost, "/v1/batches", tokenA, io.MultiReader(strings.NewReader(batch.String())))
	wantError(t, r, http.StatusRequestEntityTooLarge, "request_too_large")
	if keys, _ := b.rdb.Keys(context.Background(), "mimoq:*").Result(); len(keys) != 0 {
		t.Errorf("refused uploads left keys %v", keys)
	}
	// Just under the limit is fine.
	r = b.post("/v1/jobs", jobEnvelope(chatBody))
	decode[map[string]string](t, r, http.StatusAccepted)
}

func TestWaitIsCappedAndReturnsOnCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *server.Config) { c.MaxWait = 300 * time.Millisecond })
	id := b.submit()
	// ?wait=1h is capped at MaxWait: the answer comes (the client gives up
	// long before an hour) with the job still queued.
	b.hc.Timeout = 30 * time.Second
	j := decode[enqueue.Job](t, b.get("/v1/jobs/"+id+"?wait=1h"), http.StatusOK)
	if j.State != enqueue.StateQueued {
		t.Errorf("state after a capped wait %s, want queued", j.State)
	}
	j = decode[enqueue.Job](t, b.get("/v1/jobs/"+id+"?wait=0.1"), http.StatusOK)
	if j.State != enqueue.StateQueued {
		t.Errorf("state %s", j.State)
	}
	// A job that ends during the wait is answered with its final record.
	b2 := setup(t, func(c *server.Config) { c.MaxWait = time.Minute })
	b2.hc.Timeout = 30 * time.Second
	id = b2.submit()
	done := make(chan response, 1)
	go func() { done <- b2.get("/v1/jobs/" + id + "?wait=45s") }()
	// Finish once the waiter has subscribed, so that the notice is what
	// ends the wait.
	eventually(t, 10*time.Second, "waiter subscribed", func() bool {
		n, _ := b2.rdb.PubSubNumSub(context.Background(), records.DoneChannel(id)).Result()
		return n[records.DoneChannel(id)] == 1
	})
	b2.finish(id, enqueue.StateSucceeded)
	j = decode[enqueue.Job](t, <-done, http.StatusOK)
	if j.State != enqueue.StateSucceeded || len(j.Result) == 0 {
		t.Errorf("job after wait: %s %s", j.State, j.Result)
	}
	for _, bad := range []string{"soon", "-5s", "NaN"} {
		e := wantError(t, b.get("/v1/jobs/"+id+"?wait="+bad), http.StatusBadRequest, "invalid_request")
		if e.Param != "wait" {
			t.Errorf("wait=%s: param %q", bad, e.Param)
		}
	}
	wantError(t, b.get("/v1/jobs/01NOSUCH?wait=1s"), http.StatusNotFound, "not_found")
}

func TestMetricsNeedTokenAndCountRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.get("/v1/batches")
	r := b.get("/metrics")
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`mimoq_http_requests_total{code="200",route="GET /v1/batches"} 1`)) {
		t.Errorf("metrics %d:\n%s", r.status, r.body)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeLongPollOutlivesReadTimeout runs the real http.Server of Serve:
// a long poll is not cut off when ReadTimeout (which bounds reading the
// request) passes while it waits, and Serve stops on its context.
func TestServeLongPollOutlivesReadTimeout(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	rdb := r.Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := server.New(server.Config{
		Tokens: auth.NewTokens(tokenA), Client: c, Redis: rdb,
		ReadTimeout: 200 * time.Millisecond, MaxWait: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	b := &bundle{t: t, rdb: rdb, client: c, url: "http://" + ln.Addr().String(), hc: &http.Client{Timeout: time.Minute}}

	id := b.submit()
	done := make(chan response, 1)
	go func() { done <- b.get("/v1/jobs/" + id + "?wait=15s") }()
	ch := records.DoneChannel(id)
	eventually(t, 10*time.Second, "waiter subscribed", func() bool {
		n, _ := rdb.PubSubNumSub(context.Background(), ch).Result()
		return n[ch] == 1
	})
	time.Sleep(500 * time.Millisecond) // past the read deadline
	b.finish(id, enqueue.StateSucceeded)
	if j := decode[enqueue.Job](t, <-done, http.StatusOK); j.State != enqueue.StateSucceeded {
		t.Errorf("long poll past ReadTimeout ended with state %s, want succeeded", j.State)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// slowReader hands out its data after a pause, as a slow uplink would.
type slowReader struct {
	pause time.Duration
	r     io.Reader
	began bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	if !s.began {
		s.began = true
		time.Sleep(s.pause)
	}
	return s.r.Read(p)
}

// TestServeSlowUploadIsAnswered: an upload that takes longer than
// WriteTimeout (which runs from the end of the request headers) still gets
// its answer.
func TestServeSlowUploadIsAnswered(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	rdb := r.Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := server.New(server.Config{
		Tokens: auth.NewTokens(tokenA), Client: c, Redis: rdb,
		MaxWait: 50 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx, ln) }()
	b := &bundle{t: t, rdb: rdb, client: c, url: "http://" + ln.Addr().String(), hc: &http.Client{Timeout: time.Minute}}

	resp := b.do(http.MethodPost, "/v1/batches", tokenA, &slowReader{pause: 600 * time.Millisecond, r: strings.NewReader(batchFile(3))})
	if got := decode[enqueue.Batch](t, resp, http.StatusAccepted); got.Total != 3 {
		t.Errorf("batch %+v", got)
	}
}

// TestWaitersAreCapped: beyond MaxWaiters, ?wait= answers at once with the
// current state instead of holding another Redis connection.
func TestWaitersAreCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *server.Config) { c.MaxWaiters = 1; c.MaxWait = time.Minute })
	b.hc.Timeout = 30 * time.Second // well below the 50s asked for
	id := b.submit()
	first := make(chan response, 1)
	go func() { first <- b.get("/v1/jobs/" + id + "?wait=50s") }()
	ch := records.DoneChannel(id)
	eventually(t, 10*time.Second, "first waiter subscribed", func() bool {
		n, _ := b.rdb.PubSubNumSub(context.Background(), ch).Result()
		return n[ch] == 1
	})
	if j := decode[enqueue.Job](t, b.get("/v1/jobs/"+id+"?wait=50s"), http.StatusOK); j.State != enqueue.StateQueued {
		t.Errorf("second waiter: state %s, want queued at once", j.State)
	}
	b.finish(id, enqueue.StateSucceeded)
	if j := decode[enqueue.Job](t, <-first, http.StatusOK); j.State != enqueue.StateSucceeded {
		t.Errorf("first waiter: state %s", j.State)
	}
}
