package openaiapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/files"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/openaiapi"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/records/recordstest"
	"github.com/mimoq/mimoq/internal/redistest"
)

// world is one test's API on a private Redis, without a worker: tests
// finish jobs themselves (recordstest) where they need answers.
type world struct {
	t      *testing.T
	rdb    *redis.Client
	client *enqueue.Client
	url    string
}

func newWorld(t *testing.T, maxFileBytes int64, syncTimeout time.Duration) *world {
	t.Helper()
	rdb := redistest.New(t).Client()
	client, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	api, err := openaiapi.New(openaiapi.Config{Client: client, Redis: rdb, Files: files.New(rdb, time.Hour, maxFileBytes),
		SyncTimeout: syncTimeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for pattern, h := range api.Routes() {
		mux.Handle(pattern, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &world{t: t, rdb: rdb, client: client, url: srv.URL + openaiapi.Prefix}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// errorOf decodes OpenAI's error shape, failing the test on any other.
func (a answer) errorOf(t *testing.T) (code, param, message, typ string) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("status %d: not OpenAI's error shape: %s", a.status, a.body)
	}
	if e.Error.Code != nil {
		code = *e.Error.Code
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return code, param, e.Error.Message, e.Error.Type
}

func (w *world) do(method, path, contentType string, body io.Reader, header ...string) answer {
	w.t.Helper()
	req, err := http.NewRequest(method, w.url+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func (w *world) postJSON(path string, v any, header ...string) answer {
	w.t.Helper()
	b, _ := json.Marshal(v)
	return w.do(http.MethodPost, path, "application/json", bytes.NewReader(b), header...)
}

// upload sends a multipart upload with the fields in order.
func (w *world) upload(filename string, content io.Reader, fields ...string) answer {
	w.t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i] == "file" {
				fw, _ := mw.CreateFormFile("file", filename)
				if _, err := io.Copy(fw, content); err != nil {
					pw.CloseWithError(err)
					return
				}
				continue
			}
			_ = mw.WriteField(fields[i], fields[i+1])
		}
		pw.CloseWithError(mw.Close())
	}()
	return w.do(http.MethodPost, "/files", mw.FormDataContentType(), pr)
}

func (w *world) fileKeys() []string {
	keys, err := w.rdb.Keys(context.Background(), "mimoq:{file:*").Result()
	if err != nil {
		w.t.Fatal(err)
	}
	return keys
}

const goodLine = `{"custom_id":"%s","method":"POST","url":"/v1/chat/completions","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}}`

func jsonl(ids ...string) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, goodLine+"\n", id)
	}
	return b.String()
}

func TestUploadIsRefusedWithNothingStored(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1<<20, time.Second)
	line := fmt.Sprintf(goodLine+"\n", "x")
	big := strings.Repeat(line, (1<<20)/len(line)+100)
	for _, tc := range []struct {
		name     string
		filename string
		content  string
		fields   []string
		status   int
		code     string
		param    string
	}{
		{"over the limit", "in.jsonl", big, []string{"purpose", "batch", "file", ""}, 413, "file_too_large", "file"},
		{"over the limit, purpose last", "in.jsonl", big, []string{"file", "", "purpose", "batch"}, 413, "file_too_large", "file"},
		{"not JSONL", "in.jsonl", "id,prompt\n1,hi\n", []string{"purpose", "batch", "file", ""}, 400, "invalid_file_format", "file"},
		{"not a .jsonl name", "in.csv", jsonl("a"), []string{"purpose", "batch", "file", ""}, 400, "invalid_file_format", "file"},
		{"wrong purpose first", "in.jsonl", jsonl("a"), []string{"purpose", "fine-tune", "file", ""}, 400, "invalid_purpose", "purpose"},
		{"wrong purpose last", "in.jsonl", jsonl("a"), []string{"file", "", "purpose", "assistants"}, 400, "invalid_purpose", "purpose"},
		{"no purpose", "in.jsonl", jsonl("a"), []string{"file", ""}, 400, "missing_required_parameter", "purpose"},
		{"no file", "in.jsonl", "", []string{"purpose", "batch"}, 400, "missing_required_parameter", "file"},
		{"empty file", "in.jsonl", "", []string{"purpose", "batch", "file", ""}, 400, "invalid_file_format", "file"},
		{"unknown field", "in.jsonl", jsonl("a"), []string{"file", "", "purpose", "batch", "colour", "red"}, 400, "unknown_parameter", "colour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := w.upload(tc.filename, strings.NewReader(tc.content), tc.fields...)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if code, param, _, _ := a.errorOf(t); code != tc.code || param != tc.param {
				t.Errorf("code %q param %q, want %q %q", code, param, tc.code, tc.param)
			}
			if keys := w.fileKeys(); len(keys) != 0 {
				t.Errorf("a refused upload left %d keys: %v", len(keys), keys[:min(len(keys), 3)])
			}
		})
	}
	// Not multipart at all.
	a := w.do(http.MethodPost, "/files", "application/json", strings.NewReader(`{"file":"x"}`))
	if a.status != 400 {
		t.Errorf("a JSON upload: status %d", a.status)
	}
}

func uploadFile(t *testing.T, w *world, content string) string {
	t.Helper()
	a := w.upload("input.jsonl", strings.NewReader(content), "file", "", "purpose", "batch")
	if a.status != 200 {
		t.Fatalf("upload: %d %s", a.status, a.body)
	}
	var f files.File
	if err := json.Unmarshal(a.body, &f); err != nil || !strings.HasPrefix(f.ID, "file-") || f.Bytes != int64(len(content)) ||
		f.Object != "file" || f.Purpose != "batch" || f.Filename != "input.jsonl" || f.CreatedAt == 0 || f.ExpiresAt <= f.CreatedAt {
		t.Fatalf("file object %s (%v)", a.body, err)
	}
	return f.ID
}

func TestFilesRoundTrip(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0, time.Second)
	content := jsonl("a", "b", "c")
	id := uploadFile(t, w, content)
	if a := w.do(http.MethodGet, "/files/"+id+"/content", "", nil); a.status != 200 || string(a.body) != content {
		t.Fatalf("content: %d %q", a.status, a.body)
	}
	other := uploadFile(t, w, jsonl("d"))
	var page struct {
		Object  string       `json:"object"`
		Data    []files.File `json:"data"`
		FirstID string       `json:"first_id"`
		LastID  string       `json:"last_id"`
		HasMore bool         `json:"has_more"`
	}
	a := w.do(http.MethodGet, "/files?limit=1", "", nil)
	if err := json.Unmarshal(a.body, &page); err != nil || page.Object != "list" || len(page.Data) != 1 || !page.HasMore {
		t.Fatalf("first page: %s", a.body)
	}
	a = w.do(http.MethodGet, "/files?limit=1&after="+page.LastID, "", nil)
	page.Data = nil
	if err := json.Unmarshal(a.body, &page); err != nil || len(page.Data) != 1 || page.HasMore || page.Data[0].ID == other && page.Data[0].ID == id {
		t.Fatalf("second page: %s", a.body)
	}
	if a := w.do(http.MethodDelete, "/files/"+id, "", nil); a.status != 200 || !strings.Contains(string(a.body), `"deleted":true`) {
		t.Fatalf("delete: %d %s", a.status, a.body)
	}
	for _, path := range []string{"/files/" + id, "/files/" + id + "/content"} {
		a := w.do(http.MethodGet, path, "", nil)
		if a.status != 404 {
			t.Errorf("%s after delete: %d", path, a.status)
		}
		a.errorOf(t)
	}
}

func TestCreateBatchRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0, time.Second)
	id := uploadFile(t, w, jsonl("a"))
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		code   string
		param  string
	}{
		{"unknown file", map[string]any{"input_file_id": "file-0123456789abcdef01234567", "endpoint": "/v1/chat/completions", "completion_window": "24h"}, 404, "file_not_found", "input_file_id"},
		{"embeddings", map[string]any{"input_file_id": id, "endpoint": "/v1/embeddings", "completion_window": "24h"}, 400, "unsupported_endpoint", "endpoint"},
		{"responses", map[string]any{"input_file_id": id, "endpoint": "/v1/responses", "completion_window": "24h"}, 400, "unsupported_endpoint", "endpoint"},
		{"no endpoint", map[string]any{"input_file_id": id}, 400, "missing_required_parameter", "endpoint"},
		{"no file", map[string]any{"endpoint": "/v1/chat/completions"}, 400, "missing_required_parameter", "input_file_id"},
		{"short window", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "30s"}, 400, "invalid_completion_window", "completion_window"},
		{"bad window", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "a day"}, 400, "invalid_completion_window", "completion_window"},
		{"private webhook", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "webhook": "https://10.0.0.8/hook"}, 400, "invalid_webhook", "webhook"},
		{"plain-http webhook", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "webhook": "http://example.com/hook"}, 400, "invalid_webhook", "webhook"},
		{"unknown field", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "colour": "red"}, 400, "unknown_parameter", "colour"},
		{"too much metadata", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "metadata": map[string]string{"k": strings.Repeat("v", 513)}}, 400, "invalid_metadata", "metadata"},
		{"weight 0", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "weight": 0}, 400, "invalid_request", "weight"},
		{"weight not a number", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "weight": "3"}, 400, "invalid_request", ""},
		{"bad tenant", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions", "tenant": "a b"}, 400, "invalid_request", "tenant"},
	} {
		a := w.postJSON("/batches", tc.body)
		if a.status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, a.status, tc.status, a.body)
			continue
		}
		if code, param, _, _ := a.errorOf(t); code != tc.code || param != tc.param {
			t.Errorf("%s: code %q param %q, want %q %q", tc.name, code, param, tc.code, tc.param)
		}
	}
	if n, _ := w.rdb.ZCard(context.Background(), "mimoq:batches").Result(); n != 0 {
		t.Errorf("refused creates made %d batches", n)
	}
	// weight and tenant, mimoq's extra body fields, give the batch its share.
	b := decodeBatch(t, w.postJSON("/batches", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions",
		"weight": 3, "tenant": "acme"}))
	mb, err := w.client.GetBatch(context.Background(), b.ID)
	if err != nil || mb.Weight != 3 || mb.Tenant != "acme" {
		t.Errorf("batch created with weight 3 and tenant acme: %+v %v", mb, err)
	}
}

// batchObject is the part of OpenAI's Batch object the tests read.
type batchObject struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Status        string            `json:"status"`
	InputFileID   string            `json:"input_file_id"`
	OutputFileID  *string           `json:"output_file_id"`
	ErrorFileID   *string           `json:"error_file_id"`
	ExpiresAt     *int64            `json:"expires_at"`
	CompletedAt   *int64            `json:"completed_at"`
	CancelledAt   *int64            `json:"cancelled_at"`
	Metadata      map[string]string `json:"metadata"`
	RequestCounts struct {
		Total, Completed, Failed int
	} `json:"request_counts"`
	Errors *struct {
		Data []struct {
			Code    string  `json:"code"`
			Message string  `json:"message"`
			Param   *string `json:"param"`
			Line    *int    `json:"line"`
		} `json:"data"`
	} `json:"errors"`
}

func decodeBatch(t *testing.T, a answer) batchObject {
	t.Helper()
	var b batchObject
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if err := json.Unmarshal(a.body, &b); err != nil || b.Object != "batch" || !strings.HasPrefix(b.ID, "batch_") {
		t.Fatalf("batch object %s (%v)", a.body, err)
	}
	return b
}

func TestInvalidFileFailsTheBatchNamingEachLine(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0, time.Second)
	content := jsonl("a") + "not json\n" + jsonl("a") +
		`{"custom_id":"z","body":{"model":"mimo-v2-flash","messages":[{"role":"user","content":"hi"}]}}` + "\n"
	id := uploadFile(t, w, content)
	b := decodeBatch(t, w.postJSON("/batches", map[string]any{"input_file_id": id, "endpoint": "/v1/chat/completions",
		"completion_window": "24h"}))
	if b.Status != "failed" || b.Errors == nil || len(b.Errors.Data) != 3 {
		t.Fatalf("batch %+v", b)
	}
	want := []struct {
		line        int
		code, param string
	}{{2, enqueue.CodeInvalidJSONLine, ""}, {3, enqueue.CodeDuplicateCustomID, "custom_id"}, {4, enqueue.CodeModelNotFound, "body.model"}}
	for i, e := range b.Errors.Data {
		param := ""
		if e.Param != nil {
			param = *e.Param
		}
		if e.Line == nil || *e.Line != want[i].line || e.Code != want[i].code || param != want[i].param || e.Message == "" {
			t.Errorf("error %d: %+v (line %v, param %q), want %+v", i, e, e.Line, param, want[i])
		}
	}
	if n, _ := w.rdb.ZCard(context.Background(), "mimoq:batches").Result(); n != 0 {
		t.Errorf("a failed batch enqueued: %d mimoq batches", n)
	}
	again := decodeBatch(t, w.do(http.MethodGet, "/batches/"+b.ID, "", nil))
	if again.Status != "failed" || len(again.Errors.Data) != 3 {
		t.Errorf("read back: %+v", again)
	}
	if a := w.postJSON("/batches/"+b.ID+"/cancel", nil); a.status != 409 {
		t.Errorf("cancel of a failed batch: %d %s", a.status, a.body)
	}
}

func TestBatchLifecycleAndResultFiles(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0, time.Second)
	fileID := uploadFile(t, w, jsonl("a", "b", "c"))
	b := decodeBatch(t, w.postJSON("/batches", map[string]any{"input_file_id": fileID, "endpoint": "/v1/chat/completions",
		"completion_window": "24h", "metadata": map[string]string{"team": "search"}}))
	if b.Status != "in_progress" || b.RequestCounts.Total != 3 || b.Metadata["team"] != "search" || b.InputFileID != fileID ||
		b.ExpiresAt == nil || b.OutputFileID != nil {
		t.Fatalf("created: %+v", b)
	}
	mb, err := w.client.GetBatch(context.Background(), b.ID)
	if err != nil || mb.Total != 3 {
		t.Fatalf("the mimoq batch: %+v %v", mb, err)
	}
	// A worker's part: a and c succeed, b is dead with the API's 400.
	var jobs []string
	if err := w.client.Results(context.Background(), b.ID, false, func(*job.ResultLine) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		jobs = append(jobs, records.BatchJobID(b.ID, mb.CreatedAt.UnixMilli(), i))
	}
	ok := func(id string) records.Outcome {
		return records.Outcome{State: job.StateSucceeded, Counted: true, StatusCode: 200,
			Result: json.RawMessage(`{"id":"chatcmpl-` + id + `","object":"chat.completion","choices":[]}`)}
	}
	recordstest.Finish(t, w.rdb, jobs[0], ok("a"))
	recordstest.Finish(t, w.rdb, jobs[2], ok("c"))
	recordstest.Finish(t, w.rdb, jobs[1], records.Outcome{State: job.StateDead, Counted: true, StatusCode: 400,
		Error:     &job.Error{StatusCode: 400, Code: "invalid_request", Message: "bad", Class: job.ClassTerminal},
		ErrorBody: json.RawMessage(`{"error":{"message":"bad","type":"invalid_request_error","code":"invalid_request"}}`)})

	b = decodeBatch(t, w.do(http.MethodGet, "/batches/"+b.ID, "", nil))
	if b.Status != "completed" || b.CompletedAt == nil || b.RequestCounts.Completed != 2 || b.RequestCounts.Failed != 1 ||
		b.OutputFileID == nil || b.ErrorFileID == nil {
		t.Fatalf("completed: %+v", b)
	}
	out := w.do(http.MethodGet, "/files/"+*b.OutputFileID+"/content", "", nil)
	lines := strings.Split(strings.TrimSpace(string(out.body)), "\n")
	if out.status != 200 || len(lines) != 2 || !strings.Contains(lines[0], `"custom_id":"a"`) || !strings.Contains(lines[1], `"custom_id":"c"`) {
		t.Fatalf("output file: %d %s", out.status, out.body)
	}
	errs := w.do(http.MethodGet, "/files/"+*b.ErrorFileID+"/content", "", nil)
	if errs.status != 200 || strings.Count(string(errs.body), "\n") != 1 || !strings.Contains(string(errs.body), `"custom_id":"b"`) ||
		!strings.Contains(string(errs.body), `"status_code":400`) {
		t.Fatalf("error file: %d %s", errs.status, errs.body)
	}
	var meta files.File
	if a := w.do(http.MethodGet, "/files/"+*b.OutputFileID, "", nil); json.Unmarshal(a.body, &meta) != nil ||
		meta.Bytes != int64(len(out.body)) || meta.Purpose != "batch_output" {
		t.Errorf("output file object %s, content %d bytes", a.body, len(out.body))
	}
	if a := w.do(http.MethodDelete, "/files/"+*b.OutputFileID, "", nil); a.status != 400 {
		t.Errorf("delete of an output file: %d", a.status)
	}
	if a := w.postJSON("/batches/"+b.ID+"/cancel", nil); a.status != 409 {
		t.Errorf("cancel of a completed batch: %d %s", a.status, a.body)
	}
}

func TestCancelAndListBatches(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0, time.Second)
	fileID := uploadFile(t, w, jsonl("a", "b"))
	var ids []string
	for range 3 {
		b := decodeBatch(t, w.postJSON("/batches", map[string]any{"input_file_id": fileID, "endpoint": "/v1/chat/completions"}))
		ids = append(ids, b.ID)
	}
	c := decodeBatch(t, w.postJSON("/batches/"+ids[1]+"/cancel", nil))
	if c.Status != "cancelled" || c.CancelledAt == nil || c.RequestCounts.Failed != 2 || c.ErrorFileID == nil {
		t.Fatalf("cancelled (no job was running): %+v", c)
	}
	var page struct {
		Data    []batchObject `json:"data"`
		HasMore bool          `json:"has_more"`
		LastID  string        `json:"last_id"`
	}
	var seen []string
	after := ""
	for {
		a := w.do(http.MethodGet, "/batches?limit=2&after="+after, "", nil)
		page.Data = nil
		if err := json.Unmarshal(a.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Data {
			seen = append(seen, b.ID)
		}
		if !page.HasMore {
			break
		}
		after = page.LastID
	}
	if fmt.Sprint(seen) != fmt.Sprint([]string{ids[2], ids[1], ids[0]}) {
		t.Errorf("listed %v, want newest first %v", seen, ids)
	}
	if a := w.do(http.MethodGet, "/batches/batch_nope", "", nil); a.status != 404 {
		t.Errorf("unknown batch: %d", a.status)
	}
}

func TestChatCompletionAnswersWithTheAPIsOwnStatus(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0, 20*time.Second)
	req := map[string]any{"model": "mimo-v2.6-flash", "messages": []map[string]string{{"role": "user", "content": "hi"}}}

	// A refused request: 400 before anything is enqueued; an unknown model 404.
	bad := map[string]any{"model": "mimo-v2.6-flash", "messages": []map[string]string{{"role": "robot", "content": "hi"}}}
	if a := w.postJSON("/chat/completions", bad); a.status != 400 {
		t.Errorf("bad role: %d %s", a.status, a.body)
	}
	ghost := map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "user", "content": "hi"}}}
	if a := w.postJSON("/chat/completions", ghost); a.status != 404 {
		t.Errorf("unknown model: %d %s", a.status, a.body)
	} else if code, _, _, _ := a.errorOf(t); code != "model_not_found" {
		t.Errorf("unknown model: code %q", code)
	}

	// Success, and a terminal failure, each answered when a "worker"
	// finishes the job the request made.
	for _, tc := range []struct {
		outcome records.Outcome
		status  int
		body    string
	}{
		{records.Outcome{State: job.StateSucceeded, Counted: true, StatusCode: 200,
			Result: json.RawMessage(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mimo-v2.6-flash","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)},
			200, `"chatcmpl-1"`},
		{records.Outcome{State: job.StateDead, Counted: true, StatusCode: 401,
			Error:     &job.Error{StatusCode: 401, Code: "invalid_api_key", Message: "bad key", Class: job.ClassTerminal},
			ErrorBody: json.RawMessage(`{"error":{"message":"Invalid API key","type":"authentication_error","code":"invalid_api_key"}}`)},
			401, `"Invalid API key"`},
		{records.Outcome{State: job.StateDead, Counted: true,
			Error: &job.Error{Code: "timeout", Message: "the request timed out", Class: job.ClassExhausted}},
			502, `"timeout"`},
	} {
		key := "key-" + enqueue.NewID()
		done := make(chan answer, 1)
		go func() { done <- w.postJSON("/chat/completions", req, "Idempotency-Key", key) }()
		var id string
		deadline := time.Now().Add(10 * time.Second)
		for id == "" && time.Now().Before(deadline) {
			id, _ = w.rdb.Get(context.Background(), "mimoq:idem:"+idemHash(key)).Result()
			time.Sleep(10 * time.Millisecond)
		}
		if id == "" {
			t.Fatal("no job was made")
		}
		recordstest.Finish(t, w.rdb, id, tc.outcome)
		a := <-done
		if a.status != tc.status || !strings.Contains(string(a.body), tc.body) || a.header.Get(openaiapi.JobIDHeader) != id {
			t.Errorf("answer %d %s (job %q), want %d with %s", a.status, a.body, a.header.Get(openaiapi.JobIDHeader), tc.status, tc.body)
		}
		if tc.status != 200 && a.header.Get("X-Should-Retry") != "false" {
			t.Errorf("a final failure lets the SDK retry: %q", a.header.Get("X-Should-Retry"))
		}
		// The client's retry with the same key answers the same, at once.
		if again := w.postJSON("/chat/completions", req, "Idempotency-Key", key); again.status != tc.status ||
			again.header.Get(openaiapi.JobIDHeader) != id {
			t.Errorf("retry with the same key: %d, job %q", again.status, again.header.Get(openaiapi.JobIDHeader))
		}
	}
}

// idemHash is how the record store names an idempotency key.
func idemHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}
