package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisClient connects to MIMOQ_REDIS_URL and checks that Redis answers, so
// that a URL pointing nowhere fails within seconds with a clear error instead
// of hanging. Errors name the variable and the address, never the password.
func (e *env) redisClient(ctx context.Context) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(e.RedisURL)
	if err != nil {
		return nil, usagef("invalid MIMOQ_REDIS_URL: %v", redactURLError(err, e.RedisURL))
	}
	opt.DialTimeout = 3 * time.Second
	opt.ReadTimeout = 5 * time.Second
	opt.WriteTimeout = 5 * time.Second
	// Workers and waiters must outlive a Redis restart: go-redis reconnects
	// by itself, with backoff between tries.
	opt.MaxRetries = 5
	c := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s (MIMOQ_REDIS_URL): %v", opt.Addr, err)
	}
	return c, nil
}

// redactURLError keeps a URL (and so its password) out of a parse error.
func redactURLError(err error, raw string) error {
	if raw == "" {
		return errors.New("empty URL")
	}
	return errors.New(strings.ReplaceAll(err.Error(), raw, "<url>"))
}
