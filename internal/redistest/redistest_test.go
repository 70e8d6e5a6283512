package redistest_test

import (
	"context"
	"testing"

	"github.com/mimoq/mimoq/internal/redistest"
)

func TestIsolatedServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := redistest.New(t), redistest.New(t)
	if a.URL() == b.URL() {
		t.Fatalf("two tests share one Redis: %s", a.URL())
	}
	if err := a.Client().Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client().Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("key leaked between servers: exists=%d err=%v", n, err)
	}
}

func TestRestartKeepsAppendOnlyData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.New(t)
	if s.Dir() == "" {
		t.Skip("shared Redis from " + redistest.EnvURL + " cannot be restarted")
	}
	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	if err := s.Client().Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded while the server was down")
	}
	s.Restart()
	got, err := s.Client().Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart: got %q, %v; want v", got, err)
	}
}
