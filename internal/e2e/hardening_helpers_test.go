package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
)

// soak returns ci, or soakN when MIMOQ_SOAK is set (make soak): the same
// tests, longer and bigger.
func soak(ci, soakN int) int {
	if os.Getenv("MIMOQ_SOAK") != "" {
		return soakN
	}
	return ci
}

// startWorkerAddr is startWorker that also returns the worker's HTTP
// address (for /readyz).
func (f *fleet) startWorkerAddr(env ...string) (*Proc, string) {
	f.t.Helper()
	addr := FreeAddr(f.t)
	all := append(append(append([]string{}, f.env...), "MIMOQ_HTTP_ADDR="+addr), env...)
	p := Start(f.t, bin, all, "worker")
	WaitHTTP(f.t, "http://"+addr+"/readyz", 60*time.Second)
	return p, addr
}

// workerID is the ID a worker process gives itself in job histories.
func workerID(p *Proc) string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(p.cmd.Process.Pid)
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// httpStatus is the status of GET url, or 0 when nothing answered.
func httpStatus(url string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// submitBatchFile submits a batch file with the real binary and returns the
// batch ID.
func (f *fleet) submitBatchFile(path, id string) {
	f.t.Helper()
	if _, stderr, code := f.run("batch", "submit", path, "--id", id); code != 0 {
		f.t.Fatalf("batch submit exited %d: %s", code, stderr)
	}
}

// waitBatchFinal waits until batch id is finished and returns its record and its
// jobs, in input order.
func (f *fleet) waitBatchFinal(id string, d time.Duration) (*enqueue.Batch, []*enqueue.Job) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	b, err := f.client.WaitBatch(ctx, id)
	if err != nil {
		f.t.Fatalf("batch %s not finished within %s: %v (%+v)", id, d, err, b)
	}
	var ids []string
	if err := f.client.Results(ctx, id, false, func(l *enqueue.ResultLine) error {
		ids = append(ids, l.ID)
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	return b, f.getJobs(ids)
}

// getJobs reads job records, in the order of ids.
func (f *fleet) getJobs(ids []string) []*enqueue.Job {
	f.t.Helper()
	out := make([]*enqueue.Job, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			j, err := f.client.Get(context.Background(), id)
			if err != nil {
				errs <- err
				return
			}
			out[i] = j
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		f.t.Fatal(err)
	}
	return out
}

// mockCalls fetches the mock's call log of every job.
func (f *fleet) mockCalls(ids []string) map[string]*jobCalls {
	f.t.Helper()
	out := make(map[string]*jobCalls, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var c jobCalls
			f.mock.Calls(f.t, id, &c)
			mu.Lock()
			out[id] = &c
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// interruptions counts the interrupted deliveries in a job's history, and
// those of worker w.
func interruptions(j *enqueue.Job, w string) (all, byW int) {
	for _, h := range j.History {
		if h.Reason == "interrupted" {
			all++
			if h.Worker == w {
				byW++
			}
		}
	}
	return all, byW
}

// writeLines writes lines (each followed by a newline) to a new file.
func writeLines(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.jsonl")
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// batchLine is one batch input line for model.
func batchLine(customID, model, content string) string {
	return fmt.Sprintf(`{"custom_id":%q,"body":{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":32}}`,
		customID, model, content)
}

// redisDump returns every key of the Redis and every value under it, as
// text: strings, hashes, lists, sets, sorted sets and streams. Binary values
// (asynq's protobuf task messages) are included byte for byte.
func redisDump(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	sort.Strings(keys)
	var b strings.Builder
	types := map[string]int{}
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("type %s: %v", k, err)
		}
		types[typ]++
		fmt.Fprintf(&b, "%s %s\n", typ, k)
		switch typ {
		case "string":
			v, _ := rdb.Get(ctx, k).Result()
			b.WriteString(v)
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				fmt.Fprintf(&b, "%s=%s\n", f, v)
			}
		case "list":
			for _, v := range rdb.LRange(ctx, k, 0, -1).Val() {
				b.WriteString(v + "\n")
			}
		case "set":
			for _, v := range rdb.SMembers(ctx, k).Val() {
				b.WriteString(v + "\n")
			}
		case "zset":
			for _, z := range rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
				fmt.Fprintf(&b, "%v %v\n", z.Member, z.Score)
			}
		case "stream":
			for _, m := range rdb.XRange(ctx, k, "-", "+").Val() {
				fmt.Fprintf(&b, "%s %v\n", m.ID, m.Values)
			}
		case "none": // expired meanwhile
		default:
			t.Errorf("key %s has type %s, which the scan does not read", k, typ)
		}
		b.WriteByte('\n')
	}
	t.Logf("redis dump: %d keys by type %v, %d bytes", len(keys), types, b.Len())
	return b.String()
}

// runEnv is run with env added to the fleet's environment (a later value
// of a variable wins).
func (f *fleet) runEnv(env []string, args ...string) (string, string, int) {
	f.t.Helper()
	saved := f.env
	f.env = append(append([]string{}, f.env...), env...)
	defer func() { f.env = saved }()
	return f.run(args...)
}

// queueKeys lists the keys a submit writes: asynq's and mimoq's job and
// batch records.
func (f *fleet) queueKeys() []string {
	f.t.Helper()
	var out []string
	for _, pat := range []string{"asynq:{*", "mimoq:job:*", "mimoq:batch*"} {
		keys, err := f.rdb.Keys(context.Background(), pat).Result()
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, keys...)
	}
	return out
}
