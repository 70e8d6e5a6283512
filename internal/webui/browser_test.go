package webui

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/browsertest"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
)

// TestBrowserRequeue drives a real headless Chromium: sign in through the
// form, open the dead-letter list, press one row's Requeue button, and
// check in Redis that the job left the dead-letter store and is queued.
func TestBrowserRequeue(t *testing.T) {
	ctx := browsertest.New(t, 2*time.Minute)
	b := setup(t)
	batch, ids := b.deadBatch(t, 6, "mimo-v2.6-flash")
	b.deadBatch(t, 3, "mimo-v2.6-pro")
	if _, err := b.lanes.Pause(b.ctx, "mimo-v2.6-pro", "401 authentication_failed on job "+ids[0]); err != nil {
		t.Fatal(err)
	}
	putExhausted(t, b, 4)

	target := ids[2]
	requeueBtn := chromedp.CSS(`button[data-requeue="` + target + `"]`)
	err := chromedp.Do(ctx,
		chromedp.Navigate(b.srv.URL+"/ui/dlq?batch="+batch),
		chromedp.WaitVisible(chromedp.ID("token")),
	)
	if err != nil {
		t.Fatalf("open the page: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loc, "/ui/login") || strings.Contains(loc, testToken) {
		t.Errorf("not signed in: at %s, want the login form", loc)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token"), testToken),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(requeueBtn),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	dlqShot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(requeueBtn), chromedp.WaitVisible(chromedp.CSS(".flash"))); err != nil {
		t.Fatalf("requeue: %v", err)
	}
	flashText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".flash")))
	if err != nil {
		t.Fatal(err)
	}
	afterURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flashText, "Requeued 1 dead letter") {
		t.Errorf("flash after requeue: %q", flashText)
	}
	if strings.Contains(afterURL, testToken) {
		t.Errorf("the token is in a URL: %s", afterURL)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+"/ui"), chromedp.WaitVisible(chromedp.CSS(".cards"))); err != nil {
		t.Fatal(err)
	}
	overviewShot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}

	// Redis: the job left the dead-letter store and is queued, with its task.
	if _, err := b.store.Get(b.ctx, target); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("job %s is still a dead letter (%v)", target, err)
	}
	j, err := b.client.Get(b.ctx, target)
	if err != nil || (j.State != enqueue.StateQueued && j.State != enqueue.StateSucceeded) {
		t.Errorf("job %s is %v (%v), want queued", target, j, err)
	}
	info, err := b.insp.GetTaskInfo(job.AsynqQueue(enqueue.QueueBatch, "mimo-v2.6-flash"), target)
	if err != nil || info.State.String() != "pending" {
		t.Errorf("task of job %s: %v %v, want pending", target, info, err)
	}
	if n, _ := b.store.Count(b.ctx, dlq.Filter{BatchID: batch}); n != int64(len(ids)-1) {
		t.Errorf("%d dead letters left in the batch, want %d", n, len(ids)-1)
	}

	browsertest.Save(t, "dlq.png", dlqShot)
	browsertest.Save(t, "overview.png", overviewShot)
	for name, path := range map[string]string{"dead.png": "/ui/dlq/" + ids[3], "lanes.png": "/ui/lanes", "batch.png": "/ui/batches/" + batch} {
		if err := chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+path), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		browsertest.Save(t, name, shot)
	}
	// MIMOQ_UI_PNG=docs/ui.png (relative to the repository root) refreshes
	// the README's screenshot.
	if p := os.Getenv("MIMOQ_UI_PNG"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join("..", "..", p)
		}
		if err := os.WriteFile(p, dlqShot, 0o644); err != nil {
			t.Errorf("write %s: %v", p, err)
		}
	}
}

// putExhausted adds n dead letters that used up their attempts on 429s.
func putExhausted(t *testing.T, b *bundle, n int) {
	t.Helper()
	now := time.Now().Add(-40 * time.Minute)
	for i := range n {
		id := enqueue.NewID()
		var hist []enqueue.Attempt
		for a := 1; a <= 5; a++ {
			hist = append(hist, enqueue.Attempt{Attempt: a, Start: now.Add(time.Duration(a) * time.Second), DurationMs: 40,
				StatusCode: 429, ErrorCode: "rate_limit_exceeded", Class: "retryable", RequestID: "req-429-" + id[18:]})
		}
		rec := &dlq.Record{ID: id, Queue: enqueue.QueueInteractive, Model: "mimo-v2.6-pro-ultraspeed", Class: job.ClassExhausted,
			StatusCode: 429, ErrorCode: "rate_limit_exceeded", ErrorMessage: "Rate limit exceeded, please retry later",
			RequestID: "req-429-" + id[18:], Attempts: 5, DeadAt: now.Add(time.Duration(i) * time.Minute),
			Request: []byte(`{"model":"mimo-v2.6-pro-ultraspeed","messages":[{"role":"user","content":"Describe this"}]}`), History: hist}
		if err := b.store.Put(b.ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
}
