// Package redistest gives each test an isolated, real Redis: a private
// redis-server on a free port when one is on the PATH, otherwise the Redis
// named by MIMOQ_TEST_REDIS_URL. It never fakes Redis. When neither is
// available the test fails, unless it runs under -short, where it is skipped.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names the variable that points tests at an existing Redis when
// redis-server is not on the PATH.
const EnvURL = "MIMOQ_TEST_REDIS_URL"

// Options tune a private server.
type Options struct {
	// AppendOnly turns on AOF persistence (appendfsync everysec), so that a
	// Restart keeps the data, as the production settings do. Default true
	// through New; set NoAppendOnly to turn it off.
	NoAppendOnly bool
	// Password, when set, is required of clients (requirepass); URL and
	// Client carry it.
	Password string
	// Args are extra redis-server arguments.
	Args []string
}

// Server is one test's Redis.
type Server struct {
	t       testing.TB
	url     string
	addr    string
	dir     string
	args    []string
	private bool

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when the current process has been reaped.
	exited chan struct{}
}

// New starts a private redis-server for the test (or uses MIMOQ_TEST_REDIS_URL)
// and stops it in t.Cleanup.
func New(t testing.TB) *Server { return NewWithOptions(t, Options{}) }

// NewWithOptions is New with options for the private server.
func NewWithOptions(t testing.TB, opts Options) *Server {
	t.Helper()
	if path, err := exec.LookPath("redis-server"); err == nil {
		return startPrivate(t, path, opts)
	}
	if u := os.Getenv(EnvURL); u != "" {
		return useShared(t, u)
	}
	if testing.Short() {
		t.Skip("redistest: no redis-server on the PATH and no " + EnvURL + " (skipped under -short)")
	}
	t.Fatal("redistest: no redis-server on the PATH and no " + EnvURL + ": install redis-server (Debian: apt-get install redis-server) or set " + EnvURL)
	return nil
}

func startPrivate(t testing.TB, path string, opts Options) *Server {
	t.Helper()
	return startProcess(t, path, func(dir string, port int) []string {
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--dir", dir, "--save", "", "--daemonize", "no",
			"--logfile", filepath.Join(dir, "redis.log"),
			"--maxmemory-policy", "noeviction",
		}
		if !opts.NoAppendOnly {
			args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
		}
		if opts.Password != "" {
			args = append(args, "--requirepass", opts.Password)
		}
		return append(args, opts.Args...)
	}, opts.Password)
}

// startProcess starts a private redis-server (or sentinel) on a free port,
// with the arguments args gives for its data directory and port, and stops
// it in t.Cleanup. It tries a few ports: another process may take the free
// port found before redis-server binds it.
func startProcess(t testing.TB, path string, args func(dir string, port int) []string, password string) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, private: true}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.url = "redis://" + s.addr + "/0"
		if password != "" {
			s.url = (&url.URL{Scheme: "redis", User: url.UserPassword("", password), Host: s.addr, Path: "/0"}).String()
		}
		s.args = args(dir, port)
		if lastErr = s.spawn(path); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

func (s *Server) spawn(path string) error {
	cmd := exec.Command(path, s.args...)
	// Its own process group, so that Kill also ends the children it forks
	// for AOF rewrites, which would go on writing into the data directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := s.waitReady(exited); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		return fmt.Errorf("%w (log: %s)", err, tail(log, 400))
	}
	return nil
}

func (s *Server) waitReady(exited <-chan struct{}) error {
	opt, _ := redis.ParseURL(s.URL())
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited during start")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server not ready after 10s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func useShared(t testing.TB, u string) *Server {
	t.Helper()
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("redistest: %s: %v", EnvURL, err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	// Each test takes its own database number, so tests sharing one Redis do
	// not see each other's keys (16 databases; flushed before use).
	n, err := c.Incr(ctx, "mimoq:redistest:db").Result()
	if err != nil {
		t.Fatalf("redistest: %s unreachable: %v", EnvURL, err)
	}
	opt.DB = 1 + int(n%15)
	dbc := redis.NewClient(opt)
	defer dbc.Close()
	if err := dbc.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("redistest: flush db %d: %v", opt.DB, err)
	}
	s := &Server{t: t, addr: opt.Addr}
	s.url = fmt.Sprintf("redis://%s/%d", opt.Addr, opt.DB)
	if opt.Password != "" || opt.Username != "" {
		s.url = fmt.Sprintf("redis://%s:%s@%s/%d", opt.Username, opt.Password, opt.Addr, opt.DB)
	}
	if opt.TLSConfig != nil {
		s.url = "rediss" + s.url[len("redis"):]
	}
	return s
}

// URL is the redis:// URL of this test's Redis.
func (s *Server) URL() string { return s.url }

// Addr is host:port.
func (s *Server) Addr() string { return s.addr }

// Dir is the private server's data directory (empty for a shared Redis).
func (s *Server) Dir() string { return s.dir }

// Client returns a go-redis client for this Redis, closed in t.Cleanup.
func (s *Server) Client() *redis.Client {
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	c := redis.NewClient(opt)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// requirePrivate fails the test when the Redis is not a private process.
func (s *Server) requirePrivate(op string) {
	s.t.Helper()
	if !s.private {
		s.t.Fatalf("redistest: %s needs a private redis-server (on the PATH), not %s", op, EnvURL)
	}
}

// Kill stops the server at once with SIGKILL (nothing flushed beyond what
// AOF already wrote). It is safe to call more than once.
func (s *Server) Kill() {
	if !s.private {
		return
	}
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	<-exited
}

// Shutdown stops the server as an operator would (SHUTDOWN, which with AOF
// on flushes the file) and waits for it to exit.
func (s *Server) Shutdown() {
	s.t.Helper()
	s.requirePrivate("Shutdown")
	c := s.Client()
	_ = c.Shutdown(context.Background()).Err() // the connection drops: an error is expected
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		s.t.Fatal("redistest: redis-server did not exit after SHUTDOWN")
	}
}

// Restart starts the server again on the same port and data directory, after
// Kill or Shutdown (with AOF on, the data comes back).
func (s *Server) Restart() {
	s.t.Helper()
	s.requirePrivate("Restart")
	path, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	var lastErr error
	for range 50 { // the port may linger a moment after the old process exits
		if lastErr = s.spawn(path); lastErr == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server: %v", lastErr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
