package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/redistest"
)

var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test here skips under -short
	}
	dir, err := os.MkdirTemp("", "mimoq-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = Binary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testModels are mimoq's default models plus one the mock does not know, so
// that its jobs fail at the API with 404 (terminal) after passing local
// validation.
const ghostModel = "mimo-v2.6-ghost"

var testModels = "mimo-v2.6-pro=131072,mimo-v2.6-flash=131072,mimo-v2.6-pro-ultraspeed=131072," + ghostModel

// fleet is one test's world: a private Redis, the mock API, a producer
// client, and the environment every worker of the test shares.
type fleet struct {
	t      *testing.T
	redis  *redistest.Server
	rdb    *redis.Client
	mock   *Mock
	client *enqueue.Client
	env    []string
}

func setup(t *testing.T, mockFlags ...string) *fleet {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test (skipped under -short)")
	}
	f := &fleet{t: t, redis: redistest.New(t)}
	f.rdb = f.redis.Client()
	key := "sk-e2e-" + enqueue.NewID()
	f.mock = StartMock(t, bin, key, mockFlags...)
	models, err := apiclient.ParseModels(testModels)
	if err != nil {
		t.Fatal(err)
	}
	f.client, err = enqueue.NewClient(enqueue.ClientConfig{Redis: f.rdb, Models: models})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.client.Close() })
	f.env = []string{
		"MIMOQ_REDIS_URL=" + f.redis.URL(),
		"MIMO_API_KEY=" + key,
		"MIMO_BASE_URL=" + f.mock.URL,
		"MIMOQ_MODELS=" + testModels,
		// Off: the tests' ghost model is one the mock never lists, which a
		// live catalog refuses at submit time (catalog tests turn it on).
		"MIMOQ_CATALOG_INTERVAL=0",
		"MIMOQ_BACKOFF_BASE=20ms",
		"MIMOQ_BACKOFF_MAX=200ms",
		"MIMOQ_LOG_LEVEL=info",
	}
	return f
}

// startWorker starts a `mimoq worker` with the fleet's environment plus env
// and waits until it is ready.
func (f *fleet) startWorker(env ...string) *Proc {
	f.t.Helper()
	addr := FreeAddr(f.t)
	all := append(append(append([]string{}, f.env...), "MIMOQ_HTTP_ADDR="+addr), env...)
	p := Start(f.t, bin, all, "worker")
	WaitHTTP(f.t, "http://"+addr+"/readyz", 30*time.Second)
	return p
}

// submit enqueues n requests for model, batch-lane when queue says so.
func (f *fleet) submit(n int, model, queue string) []string {
	f.t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"question %d"}],"max_tokens":64}`, model, i)
			id, err := f.client.Submit(context.Background(), []byte(body), enqueue.WithQueue(queue))
			if err != nil {
				errs <- err
				return
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		f.t.Fatalf("submit: %v", err)
	}
	return ids
}

// waitFinal waits until every job is final and returns their records.
func (f *fleet) waitFinal(ids []string, d time.Duration) map[string]*enqueue.Job {
	f.t.Helper()
	jobs := make(map[string]*enqueue.Job, len(ids))
	Eventually(f.t, d, fmt.Sprintf("%d jobs final", len(ids)), func() bool {
		for _, id := range ids {
			if j, ok := jobs[id]; ok && j.State.Final() {
				continue
			}
			j, err := f.client.Get(context.Background(), id)
			if err != nil {
				f.t.Fatalf("get job %s: %v", id, err)
			}
			jobs[id] = j
			if !j.State.Final() {
				return false
			}
		}
		return true
	})
	return jobs
}
