package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ForExample starts a throwaway redis-server for a testable example, which
// gets no *testing.T, and returns a client and the function that stops the
// server. It panics when redis-server is not on the PATH.
func ForExample() (*redis.Client, func()) {
	port, err := freePort()
	if err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "mimoq-example-")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		panic("redis-server is needed to run this example: " + err.Error())
	}
	rdb := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	for range 500 {
		if rdb.Ping(context.Background()).Err() == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return rdb, func() { _ = rdb.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) }
}
