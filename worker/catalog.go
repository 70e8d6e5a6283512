package worker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/catalog"
)

// The live catalog: a worker reads GET /models at start and every
// CatalogInterval, publishes the model IDs for the fleet's producers
// (internal/catalog), consumes the queues of live models it was not
// configured with, and validates requests against both lists. A 400 or 404
// for a model the last reading listed makes it read the catalog again at
// once (readCatalogFresh): a model missing from it pauses its lane
// (model_not_served) instead of dead-lettering every queued job.

// catalogTimeout bounds one reading of GET /models.
const catalogTimeout = 15 * time.Second

// catalogOn reports whether this worker reads the live catalog.
func (w *Worker) catalogOn() bool { return w.cfg.CatalogInterval > 0 }

// readCatalog reads GET /models, publishes the result and makes it this
// worker's view. It returns the catalog read.
func (w *Worker) readCatalog(ctx context.Context) (*catalog.Catalog, error) {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	list, err := w.api.ListModels(ctx)
	if err != nil {
		w.metrics.catalogReads.WithLabelValues("failed").Inc()
		return nil, err
	}
	c := catalog.FromIDs(apiclient.ModelIDs(list), catalog.Source(w.api.ModelsURL()), w.cfg.ID,
		w.cfg.CatalogInterval, time.Now())
	if len(c.Models) == 0 {
		w.metrics.catalogReads.WithLabelValues("failed").Inc()
		return nil, errors.New("GET /models listed no model")
	}
	w.metrics.catalogReads.WithLabelValues("ok").Inc()
	w.catMu.Lock()
	prev := w.live
	w.live, w.liveAt = c, time.Now()
	w.catMu.Unlock()
	w.setValid(c)
	if err := catalog.Publish(ctx, w.cfg.Redis, c); err != nil {
		return c, err
	}
	if prev == nil || !slices.Equal(prev.Models, c.Models) {
		w.log.Info().Strs("models", c.Models).Str("source", c.Source).Msg("live model catalog read")
	}
	return c, nil
}

// readCatalogFresh returns a reading made after since (when a failed call
// started), reading again when the last is older: calls that failed
// together share one GET /models.
func (w *Worker) readCatalogFresh(ctx context.Context, since time.Time) (*catalog.Catalog, error) {
	w.freshMu.Lock()
	defer w.freshMu.Unlock()
	w.catMu.Lock()
	c, at := w.live, w.liveAt
	w.catMu.Unlock()
	if c != nil && !at.Before(since) {
		return c, nil
	}
	return w.readCatalog(ctx)
}

// lastCatalog is the last reading, or nil.
func (w *Worker) lastCatalog() *catalog.Catalog {
	w.catMu.Lock()
	defer w.catMu.Unlock()
	return w.live
}

// setValid sets the models requests are validated against: the configured
// ones and every live one seen since start (with the configured output
// limits). A model that leaves the live catalog stays valid here: its jobs
// reach the API, whose 400 pauses the lane (model_not_served) rather than
// each dying of a local validation error.
func (w *Worker) setValid(c *catalog.Catalog) {
	ms := slices.Clone(w.cfg.Models)
	if prev := w.valid.Load(); prev != nil {
		ms = slices.Clone(*prev)
	}
	if c != nil {
		for _, m := range apiclient.CatalogFrom(c.Models, w.cfg.Models) {
			if _, ok := ms.Lookup(m.Name); !ok {
				ms = append(ms, m)
			}
		}
	}
	w.valid.Store(&ms)
}

// validate checks a request against the models of setValid.
func (w *Worker) validate(req *apiclient.Request) error {
	if ms := w.valid.Load(); ms != nil {
		return ms.Validate(req)
	}
	return w.api.Validate(req)
}

// callModels is the call option that has the API client validate against
// the models of setValid too (its own are the configured ones).
func (w *Worker) callModels() apiclient.CallOption {
	if ms := w.valid.Load(); ms != nil {
		return apiclient.WithModels(*ms)
	}
	return nil
}

// catalogLoop re-reads the catalog every CatalogInterval and serves the
// live models that are new to this process.
func (w *Worker) catalogLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.CatalogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, err := w.readCatalog(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn().Err(err).Msg("read live model catalog failed; keeping the last")
			}
		}
		if c != nil {
			w.serveNew(c)
		}
	}
}

// newLiveModels returns the models of c this worker does not consume yet.
func (w *Worker) newLiveModels(c *catalog.Catalog) []string {
	w.srvMu.Lock()
	defer w.srvMu.Unlock()
	var out []string
	for _, m := range c.Models {
		if !slices.Contains(w.models, m) {
			out = append(out, m)
		}
	}
	return out
}

// serveNew starts consuming the queues of the live models this worker was
// not serving, once it runs.
func (w *Worker) serveNew(c *catalog.Catalog) {
	for _, m := range w.newLiveModels(c) {
		w.srvMu.Lock()
		if w.drain.Err() != nil {
			// Shutting down: the servers are being stopped.
			w.srvMu.Unlock()
			return
		}
		from := len(w.srvs)
		w.models = append(w.models, m)
		w.newServers(m)
		srvs, names, mux := w.srvs[from:], w.srvNames[from:], w.mux
		w.srvMu.Unlock()
		if mux == nil {
			continue // not running yet: Run starts them
		}
		for i, srv := range srvs {
			if err := srv.Start(mux); err != nil {
				w.log.Error().Err(err).Str("queue", names[i]).Msg("start consuming a live model")
			}
		}
		w.log.Info().Str("model", m).Msg("consuming the queues of a model from the live catalog")
	}
}
