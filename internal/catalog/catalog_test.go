package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/redistest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []string
		err      string
	}{
		{"ok", `{"models":["mimo-v2.6-pro","mimo-v2.6-flash"],"source":"https://x/v1/models","fetched_at":"2026-12-02T10:00:00Z","interval_ms":600000}`,
			[]string{"mimo-v2.6-pro", "mimo-v2.6-flash"}, ""},
		{"no models", `{"models":[]}`, nil, "no models"},
		{"missing models", `{"source":"x"}`, nil, "no models"},
		{"empty name", `{"models":["a",""]}`, nil, "empty model name"},
		{"space", `{"models":["a b"]}`, nil, "space or control"},
		{"control", `{"models":["a\u0001"]}`, nil, "space or control"},
		{"twice", `{"models":["a","a"]}`, nil, "listed twice"},
		{"not json", `{"models":`, nil, "catalog:"},
		{"wrong type", `{"models":"a"}`, nil, "catalog:"},
		{"too long", `{"models":["` + strings.Repeat("m", 300) + `"]}`, nil, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse: err %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.Models, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("models %v, want %v", c.Models, tt.want)
			}
		})
	}
}

func TestFromIDs(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))
	tests := []struct {
		name string
		ids  []string
		want string
	}{
		{"order kept", []string{"b", "a", "c"}, "b,a,c"},
		{"empty and repeated skipped", []string{"", "a", "a", "b"}, "a,b"},
		{"malformed skipped", []string{"a b", "ok", "x\n"}, "ok"},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := FromIDs(tt.ids, "src", "w1", time.Minute, now)
			if got := strings.Join(c.Models, ","); got != tt.want {
				t.Fatalf("models %q, want %q", got, tt.want)
			}
			if c.FetchedAt.Location() != time.UTC || c.IntervalMs != 60000 {
				t.Fatalf("fetched_at %v interval %d", c.FetchedAt, c.IntervalMs)
			}
		})
	}
}

func TestSource(t *testing.T) {
	t.Parallel()
	tests := []struct{ base, want string }{
		{"https://api.xiaomimimo.com/v1/models", "https://api.xiaomimimo.com/v1/models"},
		{"https://user:secret@proxy.local/v1/models?token=abc#x", "https://proxy.local/v1/models"},
		{"::bad", "GET /models"},
	}
	for _, tt := range tests {
		if got := Source(tt.base); got != tt.want {
			t.Errorf("Source(%q) = %q, want %q", tt.base, got, tt.want)
		}
		if strings.Contains(Source(tt.base), "secret") || strings.Contains(Source(tt.base), "abc") {
			t.Errorf("Source(%q) keeps a credential", tt.base)
		}
	}
}

func TestPublishLoadResolve(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := redistest.New(t).Client()
	ctx := context.Background()
	conf := apiclient.Models{{Name: "configured-only", MaxOutputTokens: 10}, {Name: "mimo-v2.6-flash", MaxOutputTokens: 77}}

	r := NewResolver(rdb, conf)
	in, err := r.InUse(ctx)
	if err != nil || in.Source != SourceConfigured || len(in.Models) != 2 {
		t.Fatalf("before publish: %+v, %v", in, err)
	}

	c := FromIDs([]string{"mimo-v2.6-flash", "new-model"}, "https://x/v1/models", "w1", time.Minute, time.Now())
	if err := Publish(ctx, rdb, c); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, Key).Val(); ttl <= time.Minute || ttl > FreshFor(time.Minute) {
		t.Fatalf("catalog TTL %s, want up to %s", ttl, FreshFor(time.Minute))
	}
	got, err := Load(ctx, rdb)
	if err != nil || !got.Has("new-model") || got.Has("configured-only") || got.By != "w1" {
		t.Fatalf("Load: %+v, %v", got, err)
	}

	in, err = NewResolver(rdb, conf).InUse(ctx)
	if err != nil || in.Source != SourceLive {
		t.Fatalf("after publish: %+v, %v", in, err)
	}
	if names := strings.Join(in.Models.Names(), ","); names != "mimo-v2.6-flash,new-model" {
		t.Fatalf("live models %s", names)
	}
	// The configured list gives a live model its output limit.
	if m, _ := in.Models.Lookup("mimo-v2.6-flash"); m.MaxOutputTokens != 77 {
		t.Fatalf("limit of flash %d, want the configured 77", m.MaxOutputTokens)
	}

	// A cached answer holds until it runs out; then the expired catalog
	// gives way to the configured list.
	rdb.Del(ctx, Key)
	r.until = time.Time{}
	if in, _ := r.InUse(ctx); in.Source != SourceConfigured {
		t.Fatalf("after the catalog expired: source %s", in.Source)
	}
	if err := Publish(ctx, rdb, &Catalog{IntervalMs: 1000}); err == nil {
		t.Fatal("an empty catalog was published")
	}
	rdb.Set(ctx, Key, `{"models":["a","a"]}`, 0)
	if _, err := Load(ctx, rdb); err == nil {
		t.Fatal("a malformed catalog was loaded")
	}
}
