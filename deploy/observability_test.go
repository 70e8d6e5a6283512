package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// promtool returns the path of Prometheus's promtool (Debian package
// prometheus; .ci/run installs it). Missing, it fails the test, unless
// -short.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not installed (apt-get install prometheus); skipped under -short")
		}
		t.Fatal("promtool not found: install it (Debian: apt-get install prometheus), as .ci/run does")
	}
	return p
}

// TestAlertRules runs `promtool check rules` on deploy/prometheus/alerts.yml,
// `promtool test rules` on its tests (a firing and a silent case per alert),
// and `promtool check config` on the compose profile's prometheus.yml.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	dir := path("deploy", "prometheus")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(pt, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("check", "rules", "alerts.yml"); !strings.Contains(out, "SUCCESS: 6 rules found") {
		t.Errorf("promtool check rules: %s", out)
	}
	run("test", "rules", "alerts_test.yml")

	// Every alert has a runbook in the README and a firing and a silent
	// case in the tests.
	rules := yamlDocs(t, filepath.Join(dir, "alerts.yml"))[0]
	readme, err := os.ReadFile(path("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	tests := yamlDocs(t, filepath.Join(dir, "alerts_test.yml"))[0]
	firing, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range get(tests, "tests").([]any) {
		for _, at := range get(tc, "alert_rule_test").([]any) {
			name := str(get(at, "alertname"))
			if exp, _ := get(at, "exp_alerts").([]any); len(exp) > 0 {
				firing[name] = true
			} else {
				silent[name] = true
			}
		}
	}
	n := 0
	for _, g := range get(rules, "groups").([]any) {
		for _, r := range get(g, "rules").([]any) {
			name := str(get(r, "alert"))
			n++
			anchor := strings.ToLower(name)
			if rb := str(get(r, "annotations", "runbook_url")); !strings.HasSuffix(rb, "README.md#"+anchor) {
				t.Errorf("alert %s: runbook_url %q; want the README's #%s", name, rb, anchor)
			}
			if !regexp.MustCompile(`(?m)^#+ ` + name + `\s*$`).Match(readme) {
				t.Errorf("alert %s: no heading %q in README.md for its runbook", name, name)
			}
			if !firing[name] || !silent[name] {
				t.Errorf("alert %s: firing case %v, silent case %v in alerts_test.yml; want both", name, firing[name], silent[name])
			}
		}
	}
	if n != 6 {
		t.Errorf("%d alerts; want 6", n)
	}

	// The compose profile's config, with its token file where the
	// container's command writes it.
	tmp := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(tmp, "serve-token")
	if err := os.WriteFile(token, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.ReplaceAll(string(cfg), "/prometheus/serve-token", token))
	for name, data := range map[string][]byte{"prometheus.yml": cfg} {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rulesRaw, _ := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	if err := os.WriteFile(filepath.Join(tmp, "alerts.yml"), rulesRaw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pt, "check", "config", "prometheus.yml")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

// TestDashboard checks deploy/grafana/mimoq.json: it parses, has a
// datasource variable of type prometheus, and every panel and query reads
// through it (never a data source named in the file).
func TestDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(path("deploy", "grafana", "mimoq.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type       string         `json:"type"`
			Title      string         `json:"title"`
			Datasource map[string]any `json:"datasource"`
			Targets    []struct {
				Expr       string         `json:"expr"`
				Datasource map[string]any `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("mimoq.json does not parse: %v", err)
	}
	if d.UID == "" {
		t.Error("dashboard has no uid")
	}
	hasVar := slices.ContainsFunc(d.Templating.List, func(v struct {
		Name, Type string
		Query      any `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	})
	if !hasVar {
		t.Errorf("no datasource variable (name datasource, type datasource, query prometheus) in %+v", d.Templating.List)
	}
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q datasource %v; want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if tg.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q query %q datasource %v; want uid ${datasource}", p.Title, tg.Expr, tg.Datasource)
			}
			if !strings.Contains(tg.Expr, "mimoq_") {
				t.Errorf("panel %q query %q reads no mimoq metric", p.Title, tg.Expr)
			}
		}
	}
	if queries < 15 {
		t.Errorf("%d queries; want the dashboard the README describes", queries)
	}

	// Every query is valid PromQL: promtool parses them as recording
	// rules, with Grafana's variables filled in.
	if _, err := exec.LookPath("promtool"); err != nil && testing.Short() {
		return
	}
	pt := promtool(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	fill := strings.NewReplacer("$__rate_interval", "5m", "$model", ".*")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			n++
			q, _ := json.Marshal(fill.Replace(tg.Expr))
			fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", n, q)
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pt, "check", "rules", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("SUCCESS: %d rules found", queries)) {
		t.Errorf("a dashboard query is not valid PromQL: %v\n%s", err, out)
	}
}

// TestComposeObservability checks docker-compose.yml's observability
// profile: Prometheus with prometheus.yml and alerts.yml mounted, scraping
// the worker and serve services; Grafana provisioned with the dashboard.
func TestComposeObservability(t *testing.T) {
	t.Parallel()
	c := yamlDocs(t, path("docker-compose.yml"))[0]
	services, _ := c["services"].(map[string]any)
	mounts := func(name string) map[string]string {
		svc := services[name]
		if svc == nil {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
		if !slices.Contains(strs(get(svc, "profiles")), "observability") {
			t.Errorf("service %s profiles %v; want observability", name, get(svc, "profiles"))
		}
		m := map[string]string{}
		for _, v := range strs(get(svc, "volumes")) {
			parts := strings.Split(v, ":")
			if strings.HasPrefix(parts[0], "./") {
				if _, err := os.Stat(path(parts[0])); err != nil {
					t.Errorf("service %s mounts %s: %v", name, parts[0], err)
				}
			}
			m[parts[0]] = parts[1]
		}
		return m
	}
	pm := mounts("prometheus")
	if pm["./deploy/prometheus/prometheus.yml"] != "/etc/prometheus/prometheus.yml" ||
		pm["./deploy/prometheus/alerts.yml"] != "/etc/prometheus/alerts.yml" {
		t.Errorf("prometheus mounts %v; want prometheus.yml and alerts.yml in /etc/prometheus", pm)
	}
	cmd := strings.Join(strs(get(services["prometheus"], "command")), " ")
	if !strings.Contains(cmd, "--config.file=/etc/prometheus/prometheus.yml") || !strings.Contains(cmd, "/prometheus/serve-token") {
		t.Errorf("prometheus command %q: want the config file and the serve token written", cmd)
	}
	if env, _ := get(services["prometheus"], "environment").(map[string]any); len(env) != 1 || env["MIMOQ_API_TOKENS"] == nil {
		t.Errorf("prometheus environment %v; want MIMOQ_API_TOKENS only (never the API key)", env)
	}
	if get(services["prometheus"], "env_file") != nil {
		t.Error("prometheus has an env_file: it would get MIMO_API_KEY")
	}
	cfg := yamlDocs(t, path("deploy", "prometheus", "prometheus.yml"))[0]
	if !slices.Contains(strs(cfg["rule_files"]), "alerts.yml") {
		t.Errorf("prometheus.yml rule_files %v; want alerts.yml", cfg["rule_files"])
	}
	targets := ""
	for _, sc := range get(cfg, "scrape_configs").([]any) {
		b, _ := json.Marshal(sc)
		targets += string(b)
	}
	for _, want := range []string{`"names":["worker"]`, `"port":9464`, `"serve:8080"`, `"credentials_file":"/prometheus/serve-token"`} {
		if !strings.Contains(targets, want) {
			t.Errorf("prometheus.yml scrape_configs lack %s: %s", want, targets)
		}
	}
	gm := mounts("grafana")
	if gm["./deploy/grafana/mimoq.json"] == "" || gm["./deploy/grafana/provisioning"] != "/etc/grafana/provisioning" {
		t.Errorf("grafana mounts %v; want the dashboard and the provisioning directory", gm)
	}
	prov := yamlDocs(t, path("deploy", "grafana", "provisioning", "dashboards", "mimoq.yml"))[0]
	if p := str(get(prov, "providers", 0, "options", "path")); !strings.HasPrefix(gm["./deploy/grafana/mimoq.json"], p+"/") {
		t.Errorf("dashboard provider reads %s; the dashboard is mounted at %s", p, gm["./deploy/grafana/mimoq.json"])
	}
	ds := yamlDocs(t, path("deploy", "grafana", "provisioning", "datasources", "prometheus.yml"))[0]
	if u := str(get(ds, "datasources", 0, "url")); u != "http://prometheus:9090" {
		t.Errorf("grafana data source url %q; want http://prometheus:9090", u)
	}
}
