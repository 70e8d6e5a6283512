package e2e

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ProxyFaults are the network faults a FaultProxy injects while they are
// set. Every rate is a probability in [0, 1].
type ProxyFaults struct {
	// Delay holds back each forwarded chunk by a uniform 0..Delay.
	Delay time.Duration
	// ResetRate is the chance, per forwarded chunk, that the connection is
	// reset (RST to both sides) instead of forwarding the chunk.
	ResetRate float64
	// StallRate is the chance, per forwarded chunk, that the connection goes
	// silent, as when packets are dropped: nothing more is forwarded for
	// StallFor, then the connection is reset.
	StallRate float64
	StallFor  time.Duration
	// RefuseRate is the chance that a new connection is reset at once.
	RefuseRate float64
}

// ProxyStats counts what a FaultProxy did.
type ProxyStats struct {
	Conns, Refused, Resets, Stalls, Chunks int64
}

// FaultProxy is a loopback TCP proxy between a mimoq process and a server
// it talks to (Redis, the API) that injects the network faults of
// ProxyFaults. It only listens on 127.0.0.1 and only forwards to the one
// target it was given; faults stop when SetFaults is given the zero value,
// and Close resets every connection left.
type FaultProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu     sync.Mutex
	faults ProxyFaults
	rng    *rand.Rand
	conns  map[*net.TCPConn]struct{}
	closed bool

	conns64, refused, resets, stalls, chunks atomic.Int64
	done                                     chan struct{}
	wg                                       sync.WaitGroup
}

// StartProxy starts a fault proxy to target (host:port) and closes it in
// t.Cleanup. It injects no fault until SetFaults.
func StartProxy(t testing.TB, target string, seed uint64) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{t: t, ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		conns: map[*net.TCPConn]struct{}{}, done: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// SetFaults changes the faults from now on; the zero value turns them off.
func (p *FaultProxy) SetFaults(f ProxyFaults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Stats returns what the proxy did so far.
func (p *FaultProxy) Stats() ProxyStats {
	return ProxyStats{Conns: p.conns64.Load(), Refused: p.refused.Load(), Resets: p.resets.Load(),
		Stalls: p.stalls.Load(), Chunks: p.chunks.Load()}
}

// ResetAll resets every open connection at once, as a network partition
// that heals at once would.
func (p *FaultProxy) ResetAll() {
	p.mu.Lock()
	conns := make([]*net.TCPConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		reset(c)
	}
}

// Close stops the proxy and resets every connection still open.
func (p *FaultProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	_ = p.ln.Close()
	p.ResetAll()
	p.wg.Wait()
}

// roll draws one fault decision with probability rate.
func (p *FaultProxy) roll(rate float64) bool {
	if rate <= 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64() < rate
}

func (p *FaultProxy) current() ProxyFaults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

func (p *FaultProxy) delay(upTo time.Duration) time.Duration {
	if upTo <= 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(p.rng.Int64N(int64(upTo)))
}

func (p *FaultProxy) track(c *net.TCPConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *FaultProxy) untrack(c *net.TCPConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *FaultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		client := c.(*net.TCPConn)
		p.conns64.Add(1)
		if p.roll(p.current().RefuseRate) {
			p.refused.Add(1)
			reset(client)
			continue
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

func (p *FaultProxy) serve(client *net.TCPConn) {
	sc, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(client)
		return
	}
	server := sc.(*net.TCPConn)
	if !p.track(client) || !p.track(server) {
		reset(client)
		reset(server)
		return
	}
	defer p.untrack(client)
	defer p.untrack(server)
	var once sync.Once
	kill := func() { once.Do(func() { reset(client); reset(server) }) }
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(server, client, kill) })
	wg.Go(func() { p.pipe(client, server, kill) })
	wg.Wait()
	_ = client.Close()
	_ = server.Close()
}

// pipe forwards src to dst chunk by chunk, injecting faults, until either
// side fails; then it ends both connections.
func (p *FaultProxy) pipe(dst, src *net.TCPConn, kill func()) {
	clean := false
	defer func() {
		if !clean {
			kill()
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.chunks.Add(1)
			f := p.current()
			if d := p.delay(f.Delay); d > 0 {
				select {
				case <-time.After(d):
				case <-p.done:
					return
				}
			}
			if p.roll(f.ResetRate) {
				p.resets.Add(1)
				return
			}
			if p.roll(f.StallRate) {
				p.stalls.Add(1)
				select {
				case <-time.After(f.StallFor):
				case <-p.done:
				}
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// A clean close: pass it on, let the other direction finish.
				clean = true
				_ = dst.CloseWrite()
			}
			return
		}
	}
}

// reset closes c with an RST rather than a FIN.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
