package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/records"
)

// These tests play a service written in another language: they talk to
// `mimoq serve` over HTTP only, with curl when it is on the PATH (Go's
// net/http otherwise), while a real `mimoq worker` calls the mock API.

var serveRE = regexp.MustCompile(`serve listening on (http://[0-9.]+:[0-9]+)`)

// server is a running `mimoq serve`.
type server struct {
	*Proc
	URL   string
	Token string
}

// startServe starts `mimoq serve` with the fleet's environment and one
// token, and waits for its "serve listening on" line.
func (f *fleet) startServe(flags ...string) *server {
	f.t.Helper()
	token := "tok-" + enqueue.NewID()
	env := append(append([]string{}, f.env...), "MIMOQ_HTTP_ADDR=127.0.0.1:0", "MIMOQ_API_TOKENS=other-token,"+token)
	p := Start(f.t, bin, env, append([]string{"serve"}, flags...)...)
	m := p.WaitOutput(serveRE, 30*time.Second)
	return &server{Proc: p, URL: m[1], Token: token}
}

// call sends one request as a client in another language would; token ""
// sends none. It returns the status and the body.
func (s *server) call(t *testing.T, method, path, token, contentType string, body []byte) (int, []byte) {
	t.Helper()
	if curl, err := exec.LookPath("curl"); err == nil {
		return curlCall(t, curl, method, s.URL+path, token, contentType, body)
	}
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// curlCall runs curl. The token goes in a config read from stdin, so that
// it does not show in the process list, as a careful script would do it.
func curlCall(t *testing.T, curl, method, url, token, contentType string, body []byte) (int, []byte) {
	t.Helper()
	args := []string{"-sS", "--max-time", "120", "-X", method, "-K", "-", "-w", "\n%{http_code}"}
	if contentType != "" {
		args = append(args, "-H", "Content-Type: "+contentType)
	}
	if body != nil {
		file := filepath.Join(t.TempDir(), "body")
		if err := os.WriteFile(file, body, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data-binary", "@"+file)
	}
	cmd := exec.Command(curl, append(args, url)...)
	if token != "" {
		cmd.Stdin = strings.NewReader(`header = "Authorization: Bearer ` + token + `"` + "\n")
	} else {
		cmd.Stdin = strings.NewReader("")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v: %s", method, url, err, stderr.String())
	}
	i := bytes.LastIndexByte(out, '\n')
	status, err := strconv.Atoi(string(out[i+1:]))
	if i < 0 || err != nil {
		t.Fatalf("curl %s %s: no status in %q", method, url, out)
	}
	return status, out[:i]
}

// callJSON sends a request with the server's token and decodes a JSON
// answer of status want into v.
func (s *server) callJSON(t *testing.T, method, path string, body []byte, want int, v any) {
	t.Helper()
	ct := ""
	if body != nil {
		ct = "application/json"
	}
	status, out := s.call(t, method, path, s.Token, ct, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, out)
		}
	}
}

func TestServeJobOverHTTP(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.startWorker("MIMOQ_RPM=1000000", "MIMOQ_TPM=0")
	s := f.startServe()

	// Without a token: 401 in the API's error shape.
	status, out := s.call(t, "POST", "/v1/jobs", "", "application/json", []byte(`{"body":{}}`))
	if status != http.StatusUnauthorized || !strings.Contains(string(out), `"authentication_failed"`) {
		t.Fatalf("no token: %d %s", status, out)
	}
	if status, _ := s.call(t, "GET", "/healthz", "", "", nil); status != http.StatusOK {
		t.Errorf("healthz: %d", status)
	}
	if status, _ := s.call(t, "GET", "/readyz", "", "", nil); status != http.StatusOK {
		t.Errorf("readyz: %d", status)
	}

	var sub struct {
		ID string `json:"id"`
	}
	s.callJSON(t, "POST", "/v1/jobs",
		[]byte(`{"body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Say hi"}],"max_tokens":32},"idempotency_key":"e2e-1"}`),
		http.StatusAccepted, &sub)
	if sub.ID == "" {
		t.Fatal("no job id")
	}
	var j enqueue.Job
	for range 5 {
		s.callJSON(t, "GET", "/v1/jobs/"+sub.ID+"?wait=30s", nil, http.StatusOK, &j)
		if j.State.Final() {
			break
		}
	}
	if j.State != enqueue.StateSucceeded || j.Attempts != 1 || j.Usage == nil {
		t.Fatalf("job %+v", j)
	}
	var resp struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(j.Result, &resp); err != nil || len(resp.Choices) == 0 || resp.Choices[0].Message.Content == "" {
		t.Errorf("result %s: %v", j.Result, err)
	}

	// A bad request names the field, in the API's error shape.
	status, out = s.call(t, "POST", "/v1/jobs", s.Token, "application/json",
		[]byte(`{"body":{"model":"mimo-v2.6-flash","messages":[],"max_tokens":32}}`))
	var e struct {
		Error struct{ Code, Message, Type, Param string } `json:"error"`
	}
	_ = json.Unmarshal(out, &e)
	if status != http.StatusBadRequest || e.Error.Code != "invalid_request" || e.Error.Param != "body.messages" || e.Error.Type != "error" {
		t.Errorf("invalid request: %d %s", status, out)
	}
}

func TestServeBatchOverHTTP(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.startWorker("MIMOQ_RPM=1000000", "MIMOQ_TPM=0")
	s := f.startServe()

	const n = 12
	var file bytes.Buffer
	for i := 1; i <= n; i++ {
		model := "mimo-v2.6-flash"
		if i == 5 {
			model = ghostModel // valid here, unknown to the API: dead with 404
		}
		fmt.Fprintf(&file, `{"custom_id":"line-%02d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"question %d"}],"max_tokens":16}}`+"\n", i, model, i)
	}
	var b enqueue.Batch
	s.callJSON(t, "POST", "/v1/batches?id=e2e-batch", file.Bytes(), http.StatusAccepted, &b)
	if b.ID != "e2e-batch" || b.Total != n {
		t.Fatalf("batch %+v", b)
	}
	// Submitting the same file again enqueues nothing twice.
	s.callJSON(t, "POST", "/v1/batches?id=e2e-batch", file.Bytes(), http.StatusAccepted, &b)

	Eventually(t, 2*time.Minute, "batch done", func() bool {
		s.callJSON(t, "GET", "/v1/batches/e2e-batch", nil, http.StatusOK, &b)
		return b.State == enqueue.BatchDone
	})
	if b.Succeeded != n-1 || b.Dead != 1 || b.Pending != 0 {
		t.Errorf("batch counts %+v", b)
	}

	status, out := s.call(t, "GET", "/v1/batches/e2e-batch/results", s.Token, "", nil)
	if status != http.StatusOK {
		t.Fatalf("results: %d %s", status, out)
	}
	var lines []enqueue.ResultLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l enqueue.ResultLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("result line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != n {
		t.Fatalf("%d result lines, want %d", len(lines), n)
	}
	ids := map[string]bool{}
	for i, l := range lines {
		if want := fmt.Sprintf("line-%02d", i+1); l.CustomID != want {
			t.Errorf("line %d is %s, want %s (input order)", i+1, l.CustomID, want)
		}
		if ids[l.ID] {
			t.Errorf("job id %s twice", l.ID)
		}
		ids[l.ID] = true
		switch {
		case i+1 == 5:
			if l.Error == nil || l.Response == nil || l.Response.StatusCode != 404 {
				t.Errorf("ghost line %+v", l)
			}
		case l.Error != nil || l.Response == nil || l.Response.StatusCode != 200 || len(l.Response.Body) == 0:
			t.Errorf("line %s: response %+v error %+v", l.CustomID, l.Response, l.Error)
		}
	}
	status, out = s.call(t, "GET", "/v1/batches/e2e-batch/results?errors=true", s.Token, "", nil)
	if status != http.StatusOK || bytes.Count(out, []byte("\n")) != 1 || !bytes.Contains(out, []byte(`"line-05"`)) {
		t.Errorf("errors-only results: %d %s", status, out)
	}

	// The dead line is in the dead-letter queue and can be requeued.
	var page struct {
		Data []struct {
			ID         string `json:"id"`
			StatusCode int    `json:"status_code"`
		} `json:"data"`
	}
	s.callJSON(t, "GET", "/v1/dlq?batch=e2e-batch", nil, http.StatusOK, &page)
	if len(page.Data) != 1 || page.Data[0].StatusCode != 404 {
		t.Fatalf("dlq %+v", page)
	}
	var rq struct {
		Matched, Requeued int
		DryRun            bool `json:"dry_run"`
	}
	s.callJSON(t, "POST", "/v1/dlq/requeue", []byte(`{"all":true,"filter":{"batch":"e2e-batch"},"dry_run":true}`), http.StatusOK, &rq)
	if rq.Matched != 1 || rq.Requeued != 0 || !rq.DryRun {
		t.Errorf("dry-run requeue %+v", rq)
	}
}

func TestServeShutdownAnswersLongPolls(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := f.startServe("--max-wait", "5m") // no worker: the job stays queued
	var sub struct{ ID string }
	s.callJSON(t, "POST", "/v1/jobs", []byte(`{"body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}`),
		http.StatusAccepted, &sub)
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	go func() {
		status, out := s.call(t, "GET", "/v1/jobs/"+sub.ID+"?wait=4m", s.Token, "", nil)
		done <- answer{status, out}
	}()
	ch := records.DoneChannel(sub.ID)
	Eventually(t, 30*time.Second, "long poll subscribed", func() bool {
		n, _ := f.rdb.PubSubNumSub(context.Background(), ch).Result()
		return n[ch] == 1
	})
	s.Signal(syscall.SIGTERM)
	a := <-done
	var j enqueue.Job
	if err := json.Unmarshal(a.body, &j); a.status != http.StatusOK || err != nil || j.State != enqueue.StateQueued {
		t.Errorf("long poll during shutdown: %d %s", a.status, a.body)
	}
	if code := s.Wait(30 * time.Second); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
}

func TestServeRefusesToStartWithoutTokens(t *testing.T) {
	t.Parallel()
	f := setup(t)
	p := Start(t, bin, append(append([]string{}, f.env...), "MIMOQ_HTTP_ADDR=127.0.0.1:0", "MIMOQ_API_TOKENS= , "), "serve")
	if code := p.Wait(30 * time.Second); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(p.Output(), "MIMOQ_API_TOKENS") {
		t.Errorf("output does not name MIMOQ_API_TOKENS:\n%s", p.Output())
	}
}
