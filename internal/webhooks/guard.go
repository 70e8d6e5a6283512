package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Timeout bounds one delivery: connect, send, and read the answer.
const Timeout = 10 * time.Second

// maxAnswer is how much of a receiver's answer is read (and kept, for the
// delivery's record): enough for an error message, never a flood.
const maxAnswer = 4 << 10

// ErrBlockedTarget is returned (wrapped) for a webhook target that resolves
// to an address mimoq does not call: loopback, private, link-local (cloud
// metadata services live there), or otherwise not on the public internet.
var ErrBlockedTarget = errors.New("the webhook target is not a public address")

// blocked are the ranges of special-purpose addresses (RFC 6890 and later)
// that are not plain public hosts, beyond what netip's predicates cover.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// public reports whether a is an address a webhook may be sent to.
func public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Guard decides which webhook targets mimoq calls and gives the HTTP client
// that calls them.
type Guard struct {
	allowHTTP bool
	hosts     map[string]bool // host names and IP literals allowed whatever they resolve to
	nets      []netip.Prefix  // address ranges allowed
	resolver  *net.Resolver
	dialer    *net.Dialer
}

// NewGuard returns a guard. allowHosts is MIMOQ_WEBHOOK_ALLOW_HOSTS: a
// comma list of host names, IP addresses or CIDR ranges that may be called
// although they are private or local (a receiver inside the cluster).
func NewGuard(allowHosts string, allowHTTP bool) (*Guard, error) {
	g := &Guard{allowHTTP: allowHTTP, hosts: map[string]bool{}, resolver: net.DefaultResolver,
		dialer: &net.Dialer{Timeout: Timeout}}
	for _, h := range strings.Split(allowHosts, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
		case strings.Contains(h, "/"):
			p, err := netip.ParsePrefix(h)
			if err != nil {
				return nil, fmt.Errorf("allowed webhook host %q is not a CIDR range: %v", h, err)
			}
			g.nets = append(g.nets, p.Masked())
		default:
			g.hosts[strings.Trim(h, "[]")] = true
		}
	}
	return g, nil
}

// allowed reports whether address a of host may be called.
func (g *Guard) allowed(host string, a netip.Addr) bool {
	if g.hosts[strings.ToLower(host)] || public(a) {
		return true
	}
	for _, p := range g.nets {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// resolve returns the addresses of host mimoq may call, or an error naming
// why there are none.
func (g *Guard) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ips, err := g.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve webhook host %s: %w", host, err)
		}
		addrs = ips
	}
	var ok []netip.Addr
	for _, a := range addrs {
		if g.allowed(host, a) {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%s resolves to %v: %w (allow it with MIMOQ_WEBHOOK_ALLOW_HOSTS)", host, addrs, ErrBlockedTarget)
	}
	return ok, nil
}

// CheckTarget checks a webhook URL given at submit time: its form (as
// CheckURL) and where it resolves now. The check is made again at every
// connect (see Client), so a name that resolves elsewhere later is caught
// then.
func (g *Guard) CheckTarget(ctx context.Context, rawURL string) error {
	if err := CheckURL(rawURL, g.allowHTTP); err != nil {
		return err
	}
	u, _ := url.Parse(rawURL)
	_, err := g.resolve(ctx, u.Hostname())
	return err
}

// dial connects to one of the allowed addresses of addr's host: the
// addresses checked are the ones dialed, so a DNS answer that changes
// between the check and the connection (rebinding) gains nothing.
func (g *Guard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := g.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var last error
	for _, a := range addrs {
		c, err := g.dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

// Client returns the HTTP client deliveries are sent with: connections only
// to allowed addresses, no redirects followed, Timeout per request, no
// proxy from the environment (it would connect on mimoq's behalf to
// anything).
func (g *Guard) Client() *http.Client {
	return &http.Client{
		Timeout: Timeout,
		Transport: &http.Transport{
			DialContext:           g.dial,
			TLSHandshakeTimeout:   Timeout,
			ResponseHeaderTimeout: Timeout,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
