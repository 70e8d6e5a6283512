package main

import (
	"context"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
)

// deps is what the commands work with, built in one place from the
// environment: the settings, Redis, the model catalog and limits, and the
// packages on top of them. Building them costs nothing but the Redis
// connection check.
type deps struct {
	env    *env
	rdb    redis.UniversalClient
	models apiclient.Models
	limits map[string]lane.Limit
	client *enqueue.Client
	store  *dlq.Store
	lanes  *lane.Lanes
	ops    *ops.Ops
}

// open reads the environment, connects to Redis and builds the deps; close
// releases them.
func (a *app) open(ctx context.Context) (*deps, error) {
	e, err := loadEnv()
	if err != nil {
		return nil, err
	}
	models, limits, err := e.modelLimits()
	if err != nil {
		return nil, err
	}
	rdb, err := e.redisClient(ctx)
	if err != nil {
		return nil, err
	}
	client, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb, Models: models, ResultTTL: e.ResultTTL,
		WebhookAllowHTTP: e.WebhookAllowHTTP, WebhookAllowHosts: e.WebhookAllowHosts})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	lanes := lane.NewLanes(rdb, asynq.NewInspectorFromRedisClient(rdb), lane.WithLimits(e.defaultLimit(), limits))
	return &deps{
		env: e, rdb: rdb, models: models, limits: limits, client: client, store: dlq.New(rdb), lanes: lanes,
		ops: ops.New(rdb, ops.WithLanes(lanes), ops.WithResultTTL(e.ResultTTL), ops.WithQuotaSuspectAfter(e.QuotaSuspectAfter)),
	}, nil
}

func (d *deps) close() { _ = d.rdb.Close() }

// withDeps opens the deps for fn and closes them after.
func (a *app) withDeps(ctx context.Context, fn func(*deps) error) error {
	d, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer d.close()
	return fn(d)
}

// modelNames is the models whose lanes and numbers commands show: the
// configured ones, then those of the live catalog (when one is published)
// that are not configured, which workers consume too.
func (d *deps) modelNames(ctx context.Context) []string {
	names := d.models.Names()
	live, _, _, err := d.client.Catalog(ctx)
	if err != nil {
		return names
	}
	for _, m := range live.Names() {
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	return names
}
