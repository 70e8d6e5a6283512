package lane

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"
)

// eventLoop applies the lane events of the whole fleet as they arrive, and
// re-reads the state of the lanes in use every RefreshInterval, for events
// missed while the subscription reconnected. One goroutine does both, so a
// re-read and an event are applied in the order they were received.
func (g *Gate) eventLoop(msgs <-chan *redis.Message) {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			var ev event
			if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
				g.log.Warn().Err(err).Str("channel", m.Channel).Msg("bad lane event")
				continue
			}
			if ln := g.existing(ev.Model); ln != nil {
				ln.applyEvent(ev, time.Now())
			}
		case <-t.C:
			g.refresh()
		}
	}
}

// refresh re-reads the state of every lane in use, in one pipeline.
func (g *Gate) refresh() {
	g.mu.Lock()
	lanes := make([]*lane, 0, len(g.lanes))
	models := make([]string, 0, len(g.lanes))
	for m, ln := range g.lanes {
		lanes = append(lanes, ln)
		models = append(models, m)
	}
	g.mu.Unlock()
	if len(lanes) == 0 {
		return
	}
	gens := make([]uint64, len(lanes))
	for i, ln := range lanes {
		ln.mu.Lock()
		gens[i] = ln.gen
		ln.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(g.ctx, max(g.cfg.RefreshInterval, time.Second))
	defer cancel()
	states, err := readStates(ctx, g.cfg.Redis, g.ks, models, true)
	if err != nil {
		if g.ctx.Err() == nil {
			g.log.Warn().Err(err).Msg("refresh lane state failed")
		}
		return
	}
	now := time.Now()
	for i, ln := range lanes {
		ln.applyRead(states[i], gens[i], now)
	}
}
