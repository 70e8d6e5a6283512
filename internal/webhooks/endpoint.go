// Package webhooks sends mimoq's completion webhooks: who is subscribed to
// which events, what a delivery looks like and how it is signed, which
// targets are safe to call, and the delivery of each event with its
// retries, recorded attempt by attempt.
package webhooks

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
)

// The events mimoq sends.
var Events = []string{
	"job.succeeded", "job.dead", "job.canceled", "job.expired",
	"batch.completed", "batch.failed", "batch.cancelled", "batch.expired",
	"lane.paused", "lane.resumed",
}

// Endpoint is a fleet-wide subscription (MIMOQ_WEBHOOK_URLS): a URL and the
// events it gets.
type Endpoint struct {
	URL string
	// Filters are event patterns such as job.dead or batch.* (path.Match
	// syntax); none means every event.
	Filters []string
}

// Wants reports whether the endpoint subscribes to event.
func (e Endpoint) Wants(event string) bool {
	if len(e.Filters) == 0 {
		return true
	}
	for _, f := range e.Filters {
		if ok, _ := path.Match(f, event); ok {
			return true
		}
	}
	return false
}

// ParseEndpoints reads MIMOQ_WEBHOOK_URLS: endpoints separated by spaces,
// newlines or ';', each a URL optionally followed by '=' and a comma list of
// events or patterns (https://ops.example/hook=batch.*,job.dead). A URL's
// own '=' (in its query) is told from the filter's by what follows the last
// one: a filter names known events. Every URL is checked as CheckURL does.
func ParseEndpoints(s string, allowHTTP bool) ([]Endpoint, error) {
	var out []Endpoint
	for _, entry := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ' ' || r == '\n' || r == '\t' }) {
		ep := Endpoint{URL: entry}
		if i := strings.LastIndexByte(entry, '='); i >= 0 {
			if filters, ok := parseFilters(entry[i+1:]); ok {
				ep.URL, ep.Filters = entry[:i], filters
			}
		}
		if err := CheckURL(ep.URL, allowHTTP); err != nil {
			return nil, fmt.Errorf("webhook endpoint %q: %w", entry, err)
		}
		if slices.ContainsFunc(out, func(o Endpoint) bool { return o.URL == ep.URL }) {
			return nil, fmt.Errorf("webhook endpoint %q is listed twice", ep.URL)
		}
		out = append(out, ep)
	}
	return out, nil
}

// parseFilters reads "batch.*,job.dead"; ok is false when s is not such a
// list (it is then part of a URL).
func parseFilters(s string) ([]string, bool) {
	if s == "" {
		return nil, false
	}
	parts := strings.Split(s, ",")
	for _, p := range parts {
		if !validFilter(p) {
			return nil, false
		}
	}
	return parts, true
}

// validFilter reports whether p is an event name or a pattern that matches
// at least one event.
func validFilter(p string) bool {
	if p == "" || strings.ContainsAny(p, "/[]\\") {
		return false
	}
	for _, e := range Events {
		if ok, err := path.Match(p, e); err == nil && ok {
			return true
		}
	}
	return false
}

// CheckURL checks that u is an absolute http(s) URL mimoq may send to: https
// unless allowHTTP, with a host, without user information (secrets travel
// in headers, never in URLs). Where it resolves is checked at connect time
// (see Dialer).
func CheckURL(u string, allowHTTP bool) error {
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %v", err)
	case p.Scheme != "https" && p.Scheme != "http":
		return fmt.Errorf("the scheme must be https, not %q", p.Scheme)
	case p.Scheme == "http" && !allowHTTP:
		return fmt.Errorf("plain http is refused (set MIMOQ_WEBHOOK_ALLOW_HTTP=true to allow it)")
	case p.Host == "" || p.Hostname() == "":
		return fmt.Errorf("the URL names no host")
	case p.User != nil:
		return fmt.Errorf("the URL carries user information: put no credentials in a webhook URL")
	}
	return nil
}
