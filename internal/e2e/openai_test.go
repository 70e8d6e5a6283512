package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/mimoq/mimoq/internal/nodesdk"
)

const (
	flashModel = "mimo-v2.6-flash"
	proModel   = "mimo-v2.6-pro"
)

// sdkBatch is the part of the SDK's Batch the checks read.
type sdkBatch struct {
	ID            string            `json:"id"`
	Status        string            `json:"status"`
	OutputFileID  *string           `json:"output_file_id"`
	ErrorFileID   *string           `json:"error_file_id"`
	Metadata      map[string]string `json:"metadata"`
	ExpiresAt     int64             `json:"expires_at"`
	ExpiredAt     *int64            `json:"expired_at"`
	RequestCounts struct {
		Total, Completed, Failed int
	} `json:"request_counts"`
	Errors *struct {
		Data []struct {
			Code string `json:"code"`
			Line *int   `json:"line"`
		} `json:"data"`
	} `json:"errors"`
}

// sdkLine is one line of an output or error file.
type sdkLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
}

type sdkError struct {
	Name            string  `json:"name"`
	BadRequestError bool    `json:"bad_request_error"`
	NotFoundError   bool    `json:"not_found_error"`
	Status          int     `json:"status"`
	Code            *string `json:"code"`
	Param           *string `json:"param"`
	Message         string  `json:"message"`
}

type sdkStep[T any] struct {
	OK    *T        `json:"ok"`
	Error *sdkError `json:"error"`
}

// openaiFleet is a fleet with a worker and `mimoq serve`, whose pro lane is
// paused so that its batches wait.
func openaiFleet(t *testing.T) (*fleet, *server) {
	t.Helper()
	f := setup(t)
	f.startWorker("MIMOQ_RPM=6000", "MIMOQ_CONCURRENCY=16")
	if _, stderr, code := f.run("lane", "pause", proModel); code != 0 {
		t.Fatalf("lane pause: %d %s", code, stderr)
	}
	return f, f.startServe()
}

func batchFileOf(t *testing.T, name string, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpenAINodeSDKBatchFlow runs a Batch API script written for OpenAI,
// with the official Node SDK, against mimoq: upload, create, poll, download
// the output and error files; cancel; a file with a bad line; list
// pagination; chat completions (plain, refused locally, refused by the API,
// streamed); models; and a batch whose 1-minute window passes while its
// lane is paused.
func TestOpenAINodeSDKBatchFlow(t *testing.T) {
	f, srv := openaiFleet(t)
	var lines []string
	for i := range 40 {
		lines = append(lines, batchLine(fmt.Sprintf("ok-%d", i), flashModel, fmt.Sprintf("question %d", i)))
	}
	for i := range 3 {
		lines = append(lines, batchLine(fmt.Sprintf("ghost-%d", i), ghostModel, "who are you"))
	}
	var paused []string
	for i := range 5 {
		paused = append(paused, batchLine(fmt.Sprintf("wait-%d", i), proModel, "later"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stdout := nodesdk.Run(ctx, t, filepath.Join("testdata", "openai_sdk.mjs"),
		"MIMOQ_BASE_URL="+srv.URL+"/openai/v1", "MIMOQ_TOKEN="+srv.Token,
		"BATCH_FILE="+batchFileOf(t, "batch.jsonl", lines...),
		"PAUSED_FILE="+batchFileOf(t, "paused.jsonl", paused...),
		"BAD_FILE="+batchFileOf(t, "bad.jsonl", lines[0], `{"custom_id": "x", "body": `, lines[1]),
		"FLASH_MODEL="+flashModel, "GHOST_MODEL="+ghostModel)

	var out struct {
		Batch sdkStep[struct {
			File struct {
				ID    string `json:"id"`
				Bytes int64  `json:"bytes"`
			} `json:"file"`
			Listed struct {
				ID string `json:"id"`
			} `json:"listed"`
			CreatedStatus string    `json:"created_status"`
			Seen          []string  `json:"seen"`
			Batch         sdkBatch  `json:"batch"`
			Output        []sdkLine `json:"output"`
			Errors        []sdkLine `json:"errors"`
		}] `json:"batch"`
		Cancel sdkStep[struct {
			First  string    `json:"first"`
			Batch  sdkBatch  `json:"batch"`
			Errors []sdkLine `json:"errors"`
		}] `json:"cancel"`
		BadFile sdkStep[sdkBatch] `json:"bad_file"`
		List    sdkStep[struct {
			IDs       []string `json:"ids"`
			FirstPage int      `json:"first_page"`
			HasMore   bool     `json:"has_more"`
		}] `json:"list"`
		Chat sdkStep[struct {
			Object  string `json:"object"`
			Content string `json:"content"`
			Job     string `json:"job"`
			Usage   struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
		}] `json:"chat"`
		ChatBadRequest sdkStep[json.RawMessage] `json:"chat_bad_request"`
		ChatAPIRefusal sdkStep[json.RawMessage] `json:"chat_api_refusal"`
		Stream         sdkStep[struct {
			Text   string `json:"text"`
			Chunks int    `json:"chunks"`
			Finish string `json:"finish"`
			Usage  *struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
		}] `json:"stream"`
		Models  sdkStep[[]string] `json:"models"`
		Expired sdkStep[struct {
			Batch  sdkBatch  `json:"batch"`
			Seen   []string  `json:"seen"`
			Errors []sdkLine `json:"errors"`
		}] `json:"expired"`
	}
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("script output: %v\n%s", err, stdout)
	}
	fail := func(step string, e *sdkError) {
		t.Helper()
		if e != nil {
			t.Errorf("%s: the SDK raised %s (%d): %s", step, e.Name, e.Status, e.Message)
		} else {
			t.Errorf("%s: no result", step)
		}
	}

	if b := out.Batch.OK; b == nil {
		fail("batch", out.Batch.Error)
	} else {
		if b.Listed.ID != b.File.ID || b.File.Bytes == 0 {
			t.Errorf("file %+v, retrieved %+v", b.File, b.Listed)
		}
		if b.CreatedStatus != "in_progress" && b.CreatedStatus != "validating" {
			t.Errorf("created in status %q", b.CreatedStatus)
		}
		bt := b.Batch
		if bt.Status != "completed" || bt.RequestCounts.Total != 43 || bt.RequestCounts.Completed != 40 ||
			bt.RequestCounts.Failed != 3 || bt.Metadata["run"] != "sdk-test" {
			t.Errorf("batch %+v (seen %v)", bt, b.Seen)
		}
		checkLines(t, "output", b.Output, "ok-", 40, 200, "")
		checkLines(t, "errors", b.Errors, "ghost-", 3, 404, "")
		// The batch is an ordinary mimoq batch.
		stdout, _, code := f.run("batch", "status", bt.ID, "--json")
		if code != 0 || !strings.Contains(stdout, `"succeeded":40`) || !strings.Contains(stdout, `"dead":3`) {
			t.Errorf("mimoq batch status %s: %d %s", bt.ID, code, stdout)
		}
	}

	if c := out.Cancel.OK; c == nil {
		fail("cancel", out.Cancel.Error)
	} else {
		if c.First != "cancelling" && c.First != "cancelled" || c.Batch.Status != "cancelled" || c.Batch.RequestCounts.Failed != 5 {
			t.Errorf("cancel: first %q, then %+v", c.First, c.Batch)
		}
		checkLines(t, "cancelled errors", c.Errors, "wait-", 5, 0, "canceled")
	}

	if b := out.BadFile.OK; b == nil {
		fail("bad file", out.BadFile.Error)
	} else if b.Status != "failed" || b.Errors == nil || len(b.Errors.Data) != 1 || b.Errors.Data[0].Line == nil ||
		*b.Errors.Data[0].Line != 2 || b.Errors.Data[0].Code != "invalid_json_line" {
		t.Errorf("bad file: %+v", b)
	}

	if l := out.List.OK; l == nil {
		fail("list", out.List.Error)
	} else if len(l.IDs) != 4 || len(slices.Compact(slices.Sorted(slices.Values(l.IDs)))) != 4 || l.FirstPage != 2 || !l.HasMore {
		t.Errorf("list: %+v, want 4 batches two a page", l)
	}

	if c := out.Chat.OK; c == nil {
		fail("chat", out.Chat.Error)
	} else if c.Object != "chat.completion" || c.Content == "" || c.Job == "" || c.Usage.TotalTokens == 0 {
		t.Errorf("chat: %+v", c)
	}
	if e := out.ChatBadRequest.Error; e == nil || !e.BadRequestError || e.Status != 400 || e.Param == nil || *e.Param != "temperature" {
		t.Errorf("temperature 5: %+v, want BadRequestError on temperature", e)
	}
	if e := out.ChatAPIRefusal.Error; e == nil || !e.NotFoundError || e.Status != 404 {
		t.Errorf("a model the API does not serve: %+v, want NotFoundError", e)
	}
	if s := out.Stream.OK; s == nil {
		fail("stream", out.Stream.Error)
	} else if s.Chunks < 3 || s.Text == "" || s.Finish != "stop" || s.Usage == nil || s.Usage.TotalTokens == 0 {
		t.Errorf("stream: %+v", s)
	}
	if m := out.Models.OK; m == nil || !slices.Contains(*m, flashModel) {
		t.Errorf("models: %v %+v", m, out.Models.Error)
	}

	if x := out.Expired.OK; x == nil {
		fail("expired", out.Expired.Error)
	} else {
		if x.Batch.Status != "expired" || x.Batch.ExpiredAt == nil || x.Batch.RequestCounts.Failed != 5 || x.Batch.OutputFileID != nil {
			t.Errorf("expired: %+v (seen %v)", x.Batch, x.Seen)
		}
		checkLines(t, "expired errors", x.Errors, "wait-", 5, 0, "batch_expired")
		stdout, _, code := f.run("batch", "status", x.Batch.ID, "--json")
		if code != 0 || !strings.Contains(stdout, `"state":"expired"`) || !strings.Contains(stdout, `"expired":5`) {
			t.Errorf("mimoq batch status of the expired batch: %d %s", code, stdout)
		}
	}
}

// checkLines checks an output or error file: n lines, each custom_id with
// prefix once, with the status (0: no response) and error code given.
func checkLines(t *testing.T, what string, lines []sdkLine, prefix string, n, status int, code string) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range lines {
		if !strings.HasPrefix(l.CustomID, prefix) || seen[l.CustomID] || l.ID == "" {
			t.Errorf("%s: line %+v (a repeat, or not %s…)", what, l, prefix)
		}
		seen[l.CustomID] = true
		gotStatus := 0
		if l.Response != nil {
			gotStatus = l.Response.StatusCode
		}
		gotCode := ""
		if l.Error != nil {
			gotCode = l.Error.Code
		}
		if gotStatus != status || (code != "" && gotCode != code) || (status == 200 && l.Error != nil) {
			t.Errorf("%s: %s has status %d, error %q; want %d %q", what, l.CustomID, gotStatus, gotCode, status, code)
		}
	}
	if len(seen) != n {
		t.Errorf("%s: %d lines, want %d", what, len(seen), n)
	}
}

// TestOpenAIGoSDKBatchFlow is the same batch flow and one chat completion
// through github.com/openai/openai-go.
func TestOpenAIGoSDKBatchFlow(t *testing.T) {
	_, srv := openaiFleet(t)
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/openai/v1/"), option.WithAPIKey(srv.Token), option.WithMaxRetries(2))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var lines []string
	for i := range 20 {
		lines = append(lines, batchLine(fmt.Sprintf("go-%d", i), flashModel, fmt.Sprintf("question %d", i)))
	}
	in, err := os.Open(batchFileOf(t, "go.jsonl", lines...))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	file, err := client.Files.New(ctx, openai.FileNewParams{File: openai.File(in, "go.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatalf("files.new: %v", err)
	}
	batch, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: file.ID,
		Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatalf("batches.new: %v", err)
	}
	for batch.Status != openai.BatchStatusCompleted {
		if batch.Status == openai.BatchStatusFailed || batch.Status == openai.BatchStatusExpired || batch.Status == openai.BatchStatusCancelled {
			t.Fatalf("batch ended %s", batch.Status)
		}
		time.Sleep(200 * time.Millisecond)
		if batch, err = client.Batches.Get(ctx, batch.ID); err != nil {
			t.Fatalf("batches.get: %v", err)
		}
	}
	if batch.RequestCounts.Total != 20 || batch.RequestCounts.Completed != 20 || batch.OutputFileID == "" || batch.ErrorFileID != "" {
		t.Fatalf("completed batch: %+v", batch)
	}
	resp, err := client.Files.Content(ctx, batch.OutputFileID)
	if err != nil {
		t.Fatalf("files.content: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var got []sdkLine
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		var sl sdkLine
		if err := json.Unmarshal([]byte(l), &sl); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		got = append(got, sl)
	}
	checkLines(t, "output", got, "go-", 20, 200, "")

	completion, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    flashModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello from openai-go")},
	})
	if err != nil {
		t.Fatalf("chat.completions.new: %v", err)
	}
	if len(completion.Choices) != 1 || completion.Choices[0].Message.Content == "" || completion.Usage.TotalTokens == 0 {
		t.Errorf("completion %+v", completion)
	}
}
