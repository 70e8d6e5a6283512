package e2e

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/browsertest"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
)

// TestBrowserRepairsADeadLetter: jobs die at the API (404); an operator
// signs in to `mimoq serve`'s web page in a real headless Chromium, opens
// the batch's dead letters and presses one row's Requeue button. The job
// leaves the dead-letter store and is queued (no worker runs meanwhile);
// once a worker runs against an API that serves the model, it succeeds.
func TestBrowserRepairsADeadLetter(t *testing.T) {
	t.Parallel()
	ctx := browsertest.New(t, 3*time.Minute)
	f := setup(t, "--rpm", "0", "--tpm", "0")
	worker := f.startWorker("MIMOQ_RPM=0", "MIMOQ_TPM=0")
	batchID := f.submitBatch(writeBatch(t, 5, ghostModel), "ui")
	f.waitBatch(batchID, func(b *enqueue.Batch) bool { return b.Dead == 5 }, 2*time.Minute)
	worker.Signal(syscall.SIGTERM)
	if code := worker.Wait(time.Minute); code != 0 {
		t.Fatalf("worker exited %d", code)
	}
	srv := f.startServe()
	lines := f.deadLines("--batch", batchID)
	target := lines[2].ID

	// Without a session the page shows the login form, nothing else.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/ui/dlq?batch="+batchID), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
		t.Fatalf("open /ui: %v", err)
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, target) || strings.Contains(html, ghostModel) {
		t.Error("the login page shows dead letters")
	}
	btn := chromedp.CSS(`button[data-requeue="` + target + `"]`)
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token"), srv.Token),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(btn),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Save(t, "serve-dlq.png", shot)
	if err := chromedp.Do(ctx, chromedp.Click(btn), chromedp.WaitVisible(chromedp.CSS(".flash"))); err != nil {
		t.Fatalf("requeue: %v", err)
	}
	flash, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".flash")))
	if err != nil || !strings.Contains(flash, "Requeued 1 dead letter") {
		t.Errorf("after requeue the page says %q (%v)", flash, err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if strings.Contains(loc, srv.Token) {
		t.Errorf("the token is in a URL: %s", loc)
	}

	// In Redis: out of the dead-letter store, queued, its task pending.
	if _, err := dlq.New(f.rdb).Get(context.Background(), target); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("job %s is still a dead letter: %v", target, err)
	}
	if j, err := f.client.Get(context.Background(), target); err != nil || j.State != enqueue.StateQueued {
		t.Errorf("job %s is %+v (%v), want queued", target, j, err)
	}
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetTaskInfo(job.AsynqQueue(enqueue.QueueBatch, ghostModel), target)
	if err != nil || info.State != asynq.TaskStatePending {
		t.Errorf("task of job %s: %v %v, want pending", target, info, err)
	}
	if n := f.deadCount(dlq.Filter{BatchID: batchID}); n != 4 {
		t.Errorf("%d dead letters left in the batch, want 4", n)
	}

	// The cause fixed, a worker runs it to success.
	fixed := StartMock(t, bin, f.mock.Key, "--rpm", "0", "--tpm", "0", "--models", testModels)
	for i, e := range f.env {
		if strings.HasPrefix(e, "MIMO_BASE_URL=") {
			f.env[i] = "MIMO_BASE_URL=" + fixed.URL
		}
	}
	f.startWorker("MIMOQ_RPM=0", "MIMOQ_TPM=0")
	j := f.waitFinal([]string{target}, time.Minute)[target]
	if j.State != enqueue.StateSucceeded {
		t.Errorf("requeued job ended %s", j.State)
	}
}
