package webhooks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestParseEndpoints(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in        string
		allowHTTP bool
		want      []Endpoint
		err       string
	}{
		{in: "", want: nil},
		{in: "https://ops.example/hook", want: []Endpoint{{URL: "https://ops.example/hook"}}},
		{in: "https://ops.example/hook=batch.*,job.dead", want: []Endpoint{{URL: "https://ops.example/hook", Filters: []string{"batch.*", "job.dead"}}}},
		{in: "https://a.example/h?token=x=job.*; https://b.example/h",
			want: []Endpoint{{URL: "https://a.example/h?token=x", Filters: []string{"job.*"}}, {URL: "https://b.example/h"}}},
		{in: "https://a.example/h?x=1", want: []Endpoint{{URL: "https://a.example/h?x=1"}}}, // "1" is no event: part of the URL
		{in: "http://a.example/h", allowHTTP: true, want: []Endpoint{{URL: "http://a.example/h"}}},
		{in: "http://a.example/h", err: "plain http is refused"},
		{in: "ftp://a.example/h", err: "scheme must be https"},
		{in: "https://user:pw@a.example/h", err: "user information"},
		{in: "https:///nohost", err: "no host"},
		{in: "https://a.example/h https://a.example/h", err: "listed twice"},
	} {
		got, err := ParseEndpoints(tc.in, tc.allowHTTP)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEndpoints(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("ParseEndpoints(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i].URL != tc.want[i].URL || strings.Join(got[i].Filters, ",") != strings.Join(tc.want[i].Filters, ",") {
				t.Errorf("ParseEndpoints(%q)[%d] = %+v, want %+v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

func TestEndpointWants(t *testing.T) {
	t.Parallel()
	ep := Endpoint{URL: "https://x", Filters: []string{"batch.*", "job.dead"}}
	for ev, want := range map[string]bool{"batch.completed": true, "batch.expired": true, "job.dead": true,
		"job.succeeded": false, "lane.paused": false} {
		if ep.Wants(ev) != want {
			t.Errorf("Wants(%s) = %v", ev, !want)
		}
	}
	if !(Endpoint{URL: "https://x"}).Wants("lane.paused") {
		t.Error("an endpoint without filters gets every event")
	}
}

func FuzzParseEndpoints(f *testing.F) {
	for _, s := range []string{"https://ops.example/hook=batch.*,job.dead", "https://a/h?x=y=job.*;https://b",
		"http://x=", "=job.dead", "https://a\n https://b=lane.*", "https://[::1]:8443/h=job.succeeded"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := ParseEndpoints(s, true)
		if err != nil {
			return
		}
		for _, ep := range eps {
			if err := CheckURL(ep.URL, true); err != nil {
				t.Fatalf("ParseEndpoints(%q) accepted %q: %v", s, ep.URL, err)
			}
			for _, f := range ep.Filters {
				if !validFilter(f) {
					t.Fatalf("ParseEndpoints(%q) accepted filter %q", s, f)
				}
			}
		}
	})
}

func TestPublicAddresses(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"93.184.216.34": true, "2606:2800:220:1::1": true, "1.1.1.1": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00:ec2::254": false, "0.0.0.0": false, "100.64.1.1": false,
		"::ffff:127.0.0.1": false, "224.0.0.1": false, "198.18.0.1": false,
	} {
		if got := public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("public(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestGuardRefusesLocalTargets: a receiver on loopback (what a metadata
// service or an internal admin port looks like to mimoq) is refused at
// submit time and at connect time, unless allow-listed; redirects are not
// followed.
func TestGuardRefusesLocalTargets(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	ctx := context.Background()

	strict, err := NewGuard("", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := strict.CheckTarget(ctx, srv.URL+"/hook"); !errors.Is(err, ErrBlockedTarget) {
		t.Errorf("CheckTarget of a loopback receiver: %v, want it refused", err)
	}
	if _, err := strict.Client().Get(srv.URL + "/hook"); !errors.Is(err, ErrBlockedTarget) {
		t.Errorf("connecting to a loopback receiver: %v, want it refused", err)
	}
	if err := strict.CheckTarget(ctx, "http://localhost:1/hook"); !errors.Is(err, ErrBlockedTarget) {
		t.Errorf("CheckTarget of localhost: %v, want it refused", err)
	}

	for _, allow := range []string{"127.0.0.1", "127.0.0.0/8"} {
		g, err := NewGuard(allow, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.CheckTarget(ctx, srv.URL+"/hook"); err != nil {
			t.Errorf("allowed with %q: %v", allow, err)
		}
		resp, err := g.Client().Get(srv.URL + "/redirect")
		if err != nil {
			t.Fatalf("allowed with %q: %v", allow, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Errorf("a redirect was followed (status %d), want it answered as is", resp.StatusCode)
		}
	}
	if _, err := NewGuard("10.0.0.0/99", false); err == nil {
		t.Error("a bad CIDR range was accepted")
	}
}
