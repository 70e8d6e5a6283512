package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/worker"
)

// usedMemory is Redis's used_memory in bytes.
func (w *world) usedMemory() int64 {
	w.b.Helper()
	info, err := w.rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		w.b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	w.b.Fatal("no used_memory in INFO")
	return 0
}

// BenchmarkRedisMemory: Redis memory per queued job (record + asynq task)
// and per finished job (record with its stored result; the task is gone).
func BenchmarkRedisMemory(b *testing.B) {
	const n = 10000
	w := newWorld(b, mockapi.Config{})
	ctx := context.Background()
	for range b.N {
		before := w.usedMemory()
		batch, err := w.client.SubmitBatch(ctx, batchFile(b, n, "mimo-v2.6-flash"), enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		queued := w.usedMemory()
		fm := w.startWorker(0, 50, worker.Backoff{})
		if _, err := w.client.WaitBatch(ctx, batch.ID); err != nil {
			b.Fatal(err)
		}
		fm.stop()
		done := w.usedMemory()
		perQueued := float64(queued-before) / n
		perResult := float64(done-before) / n
		b.ReportMetric(perQueued, "B/queued_job")
		b.ReportMetric(perResult, "B/stored_result")
		record(figure{"Redis memory, 10,000 jobs (~200-byte requests)", "bytes per queued job / per finished job with its result",
			fmt.Sprintf("%.0f / %.0f", perQueued, perResult), "", "",
			"queued: record + asynq task; finished: record + result (~700-byte mock answer) + history, kept MIMOQ_RESULT_TTL"})
	}
}

// BenchmarkWorkerRSS: resident memory of a real `mimoq worker` process with
// 500 calls in flight (the mock answers after 2 s).
func BenchmarkWorkerRSS(b *testing.B) {
	w := newWorld(b, mockapi.Config{Latency: 2 * time.Second})
	bin := filepath.Join(b.TempDir(), "mimoq")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mimoq")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ctx := context.Background()
	for range b.N {
		batch, err := w.client.SubmitBatch(ctx, batchFile(b, 3000, "mimo-v2.6-flash"), enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "worker")
		cmd.Env = []string{"MIMOQ_REDIS_URL=" + w.redis.URL(), "MIMO_API_KEY=" + w.key, "MIMO_BASE_URL=" + w.mockTS.URL + "/v1",
			"MIMOQ_CONCURRENCY=500", "MIMOQ_RPM=0", "MIMOQ_TPM=0", "MIMOQ_HTTP_ADDR=127.0.0.1:0", "MIMOQ_LOG_LEVEL=warn"}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if _, err := w.client.WaitBatch(ctx, batch.ID); err != nil {
			b.Fatal(err)
		}
		hwm := procStatus(cmd.Process.Pid, "VmHWM:")
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		b.ReportMetric(float64(hwm)/1024, "peak_RSS_MiB")
		record(figure{"worker process, concurrency 500", "peak RSS (VmHWM) over 3,000 jobs of 2 s each",
			fmt.Sprintf("%.1f MiB", float64(hwm)/1024), "", "", runtime.GOOS + ", static build"})
	}
}

// procStatus reads a kB field of /proc/PID/status.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
