// Package catalog is the live model catalog the fleet shares: the model IDs
// a worker read from the API's GET /models, published to Redis with where
// and when they came from, and read back by every producer (submit, batch
// submit, serve, the Go client) to validate requests against what the API
// serves today rather than against a list configured months ago.
//
// It holds names only: never the key, never a header. One key, with the
// default prefix:
//
//	mimoq:catalog    string: the JSON of a Catalog, PX = its freshness
//
// A catalog is fresh while its key exists: a worker republishes it every
// interval, and the key lives for FreshFor(interval), so a fleet that stopped
// reading the API leaves producers on the configured list again.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/job"
)

// Key is the Redis key of the published catalog.
const Key = job.KeyPrefix + "catalog"

// DefaultInterval is how often a worker re-reads GET /models
// (MIMOQ_CATALOG_INTERVAL).
const DefaultInterval = 10 * time.Minute

// Sources of the catalog a command uses.
const (
	SourceLive       = "live"
	SourceConfigured = "configured"
)

// Catalog is one reading of GET /models.
type Catalog struct {
	// Models are the model IDs, in the API's order.
	Models []string `json:"models"`
	// Source is the URL that was read, without credentials or query.
	Source string `json:"source"`
	// FetchedAt is when it was read.
	FetchedAt time.Time `json:"fetched_at"`
	// By names the worker that read it.
	By string `json:"by,omitempty"`
	// IntervalMs is how often that worker reads it again.
	IntervalMs int64 `json:"interval_ms"`
}

// Has reports whether the catalog lists model.
func (c *Catalog) Has(model string) bool {
	if c == nil {
		return false
	}
	for _, m := range c.Models {
		if m == model {
			return true
		}
	}
	return false
}

// FreshFor is how long a catalog read every interval stays fresh: two
// missed readings and a minute of slack.
func FreshFor(interval time.Duration) time.Duration {
	return 2*interval + time.Minute
}

// Source returns the URL GET /models was read from (modelsURL), as shown to
// operators: no user info, query or fragment.
func Source(modelsURL string) string {
	u, err := url.Parse(modelsURL)
	if err != nil {
		return "GET /models"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
	return u.String()
}

// Parse reads a published catalog and checks it: at least one model, every
// name non-empty and free of spaces and control characters, none twice.
func Parse(data []byte) (*Catalog, error) {
	var c Catalog
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if len(c.Models) == 0 {
		return nil, errors.New("catalog: no models")
	}
	seen := make(map[string]bool, len(c.Models))
	for _, m := range c.Models {
		if err := checkName(m); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		if seen[m] {
			return nil, fmt.Errorf("catalog: model %q is listed twice", m)
		}
		seen[m] = true
	}
	return &c, nil
}

func checkName(m string) error {
	switch {
	case m == "":
		return errors.New("empty model name")
	case len(m) > 256:
		return fmt.Errorf("model name of %d bytes is too long", len(m))
	case strings.ContainsFunc(m, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("model name %q contains a space or control character", m)
	}
	return nil
}

// FromIDs builds a catalog from the IDs GET /models answered: empty,
// malformed and repeated IDs are left out, the order kept.
func FromIDs(ids []string, source, by string, interval time.Duration, now time.Time) *Catalog {
	c := &Catalog{Source: source, FetchedAt: now.UTC(), By: by, IntervalMs: interval.Milliseconds()}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if checkName(id) != nil || seen[id] {
			continue
		}
		seen[id] = true
		c.Models = append(c.Models, id)
	}
	return c
}

// Publish stores c as the fleet's catalog, fresh for FreshFor of its
// interval. A catalog without models is not published: an account that
// lists nothing is more likely a glitch than a fleet with no models.
func Publish(ctx context.Context, rdb redis.UniversalClient, c *Catalog) error {
	if c == nil || len(c.Models) == 0 {
		return errors.New("publish catalog: no models")
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("publish catalog: %w", err)
	}
	ttl := FreshFor(time.Duration(c.IntervalMs) * time.Millisecond)
	if err := rdb.Set(ctx, Key, data, ttl).Err(); err != nil {
		return fmt.Errorf("publish catalog: %w", err)
	}
	return nil
}

// Load returns the published catalog, or nil when none is fresh.
func Load(ctx context.Context, rdb redis.UniversalClient) (*Catalog, error) {
	data, err := rdb.Get(ctx, Key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// InUse is the catalog a producer validates against.
type InUse struct {
	// Models are the models accepted, with their output limits.
	Models apiclient.Models
	// Source is SourceLive or SourceConfigured.
	Source string
	// Live is the published catalog, when Source is SourceLive.
	Live *Catalog
}

// Resolver gives producers the catalog in use: the live one when published
// and fresh, else the configured list. It caches what it read for a few
// seconds, so a burst of submits costs one Redis read.
type Resolver struct {
	rdb        redis.UniversalClient
	configured apiclient.Models
	cacheFor   time.Duration
	now        func() time.Time

	mu     sync.Mutex
	cached InUse
	until  time.Time
}

// NewResolver returns a Resolver; configured is MIMOQ_MODELS or the default
// list, and gives the live models their output limits. A nil rdb always
// answers the configured list.
func NewResolver(rdb redis.UniversalClient, configured apiclient.Models) *Resolver {
	return &Resolver{rdb: rdb, configured: configured, cacheFor: 5 * time.Second, now: time.Now}
}

// Configured returns the configured list.
func (r *Resolver) Configured() apiclient.Models { return r.configured }

// InUse returns the catalog to validate against. When Redis cannot be read
// it answers the configured list with the error: the caller may go on with
// it (a submit fails on Redis anyway) or report it.
func (r *Resolver) InUse(ctx context.Context) (InUse, error) {
	if r == nil {
		return InUse{Models: apiclient.DefaultModels(), Source: SourceConfigured}, nil
	}
	conf := InUse{Models: r.configured, Source: SourceConfigured}
	if r.rdb == nil {
		return conf, nil
	}
	now := r.now()
	r.mu.Lock()
	if now.Before(r.until) {
		c := r.cached
		r.mu.Unlock()
		return c, nil
	}
	r.mu.Unlock()
	live, err := Load(ctx, r.rdb)
	if err != nil {
		return conf, err
	}
	out := conf
	if live != nil {
		out = InUse{Models: apiclient.CatalogFrom(live.Models, r.configured), Source: SourceLive, Live: live}
	}
	r.mu.Lock()
	r.cached, r.until = out, now.Add(r.cacheFor)
	r.mu.Unlock()
	return out, nil
}
