// Package e2e holds mimoq's end-to-end tests and their harness: the real
// mimoq binary, built once per test run, against a private redis-server and
// the real `mimoq mockapi`.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary builds the mimoq binary once into dir and returns its path.
func Binary(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(dir, "mimoq")
	cmd := exec.Command("go", "build", "-race", "-o", out, "./cmd/mimoq")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return out, nil
}

// Proc is a running mimoq process.
type Proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs bin with args and env (added to a minimal environment) and
// stops it with SIGKILL in t.Cleanup if it still runs.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "MIMOQ_LOG_FORMAT=json"}, env...)
	p := &Proc{t: t, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", bin, args, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, tail(p.out.String(), 4000))
		}
	})
	return p
}

// Output is everything the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

// Wait waits for the process to exit (at most d) and returns its exit code.
func (p *Proc) Wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("process %v did not exit within %s", p.cmd.Args, d)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// WaitOutput waits until the output matches re and returns the first match's
// groups.
func (p *Proc) WaitOutput(re *regexp.Regexp, d time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m
		}
		select {
		case <-p.done:
			p.t.Fatalf("process %v exited before printing %s:\n%s", p.cmd.Args, re, tail(p.Output(), 3000))
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("process %v did not print %s within %s:\n%s", p.cmd.Args, re, d, tail(p.Output(), 3000))
	return nil
}

var listenRE = regexp.MustCompile(`listening on (http://[0-9.]+:[0-9]+)`)

// Mock is a running `mimoq mockapi`.
type Mock struct {
	*Proc
	URL string // base URL, e.g. http://127.0.0.1:1234/v1
	Key string
}

// StartMock starts `mimoq mockapi` on a free port with the given flags.
func StartMock(t testing.TB, bin, key string, flags ...string) *Mock {
	t.Helper()
	p := Start(t, bin, []string{"MIMO_API_KEY=" + key}, append([]string{"mockapi", "--addr", "127.0.0.1:0"}, flags...)...)
	m := p.WaitOutput(listenRE, 30*time.Second)
	return &Mock{Proc: p, URL: m[1] + "/v1", Key: key}
}

// Root is the mock's address without /v1.
func (m *Mock) Root() string { return strings.TrimSuffix(m.URL, "/v1") }

// Stats fetches GET /mock/stats into v.
func (m *Mock) Stats(t testing.TB, v any) {
	t.Helper()
	getJSON(t, m.Root()+"/mock/stats", v)
}

// Calls fetches the mock's call log of one job into v.
func (m *Mock) Calls(t testing.TB, jobID string, v any) {
	t.Helper()
	getJSON(t, m.Root()+"/mock/jobs/"+jobID, v)
}

// Configure changes the mock's faults or limits at run time (PUT /mock/config).
func (m *Mock) Configure(t testing.TB, cfg any) {
	t.Helper()
	b, _ := json.Marshal(cfg)
	req, _ := http.NewRequest(http.MethodPut, m.Root()+"/mock/config", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("configure mock: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("configure mock: %d %s", resp.StatusCode, body)
	}
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

// FreeAddr returns a free loopback address for a process's HTTP server.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitHTTP waits until url answers 200.
func WaitHTTP(t testing.TB, url string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s", url, d)
}

// Eventually polls cond every interval until it returns true or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not reached within %s", what, d)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Lines splits output into lines, for scanning logs.
func Lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
