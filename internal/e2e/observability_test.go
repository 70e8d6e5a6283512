package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// metricRE finds mimoq's metric names in PromQL.
var metricRE = regexp.MustCompile(`\bmimoq_[a-z0-9_]+`)

// TestObservabilityMetricsExist runs a real worker and serve against the
// mock (successes, retried 500s, dead 404s), scrapes their /metrics, and
// checks that every metric a panel of deploy/grafana/mimoq.json or a rule of
// deploy/prometheus/alerts.yml uses is one of them: a renamed metric
// breaks this test, not a dashboard at night.
func TestObservabilityMetricsExist(t *testing.T) {
	f := setup(t, "--rate-500", "0.3", "--seed", "16")
	addr := FreeAddr(t)
	Start(t, bin, append(append([]string{}, f.env...), "MIMOQ_HTTP_ADDR="+addr, "MIMOQ_MAX_ATTEMPTS=2"), "worker")
	WaitHTTP(t, "http://"+addr+"/readyz", 30*time.Second)
	srv := f.startServe()

	ids := append(f.submit(20, "mimo-v2.6-flash", "interactive"), f.submit(5, ghostModel, "batch")...)
	jobs := f.waitFinal(ids, 2*time.Minute)
	states := map[string]int{}
	for _, j := range jobs {
		states[string(j.State)]++
	}
	if states["succeeded"] == 0 || states["dead"] < 5 {
		t.Fatalf("the run should have successes and dead letters: %v", states)
	}

	scrape := func(url, token string) map[string]bool {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
		}
		names := map[string]bool{}
		for _, line := range strings.Split(string(body), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			name, _, _ := strings.Cut(line, " ")
			name, _, _ = strings.Cut(name, "{")
			names[name] = true
		}
		return names
	}
	have := scrape("http://"+addr+"/metrics", "")
	scrape(srv.URL+"/metrics", srv.Token) // the first scrape counts itself only when it ends
	for n := range scrape(srv.URL+"/metrics", srv.Token) {
		have[n] = true
	}

	used := map[string][]string{} // metric -> where
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "mimoq.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("mimoq.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "panel "+p.Title)
			}
		}
	}
	raw, err = os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range metricRE.FindAllString(r.Expr, -1) {
				used[m] = append(used[m], "alert "+r.Alert)
			}
		}
	}
	if len(used) < 15 {
		t.Fatalf("only %d metrics used by the dashboard and the rules: %v", len(used), used)
	}
	var missing []string
	for m, where := range used {
		if !have[m] {
			missing = append(missing, m+" (used by "+strings.Join(slices.Compact(where), ", ")+")")
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("no metric %s on the worker's or serve's /metrics", m)
	}
}
