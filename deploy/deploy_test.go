package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// root is the repository root, seen from this package's directory.
const root = ".."

func path(parts ...string) string { return filepath.Join(append([]string{root}, parts...)...) }

// binaryVars returns the environment variables the mimoq binary reads: the
// envconfig tags of the env struct in cmd/mimoq/env.go, the only place that
// reads the environment.
func binaryVars(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path("cmd", "mimoq", "env.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "env" {
			return true
		}
		for _, field := range ts.Type.(*ast.StructType).Fields.List {
			if field.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(field.Tag.Value)
			if name := reflect.StructTag(tag).Get("envconfig"); name != "" {
				vars[name] = true
			}
		}
		return false
	})
	if len(vars) < 20 {
		t.Fatalf("found only %d envconfig variables in cmd/mimoq/env.go: %v", len(vars), vars)
	}
	return vars
}

// envExample is .env.example: the variables set (VAR=value) and those only
// shown in a comment (# VAR=value).
type envExample struct {
	set       map[string]string
	commented map[string]string
}

var envLineRE = regexp.MustCompile(`^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$`)

func readEnvExample(t *testing.T) envExample {
	t.Helper()
	data, err := os.ReadFile(path(".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	e := envExample{set: map[string]string{}, commented: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		m := envLineRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		if m[1] != "" {
			e.commented[m[2]] = m[3]
			continue
		}
		if _, dup := e.set[m[2]]; dup {
			t.Errorf(".env.example:%d: %s is set twice", n, m[2])
		}
		e.set[m[2]] = m[3]
	}
	return e
}

func (e envExample) has(name string) bool {
	_, s := e.set[name]
	_, c := e.commented[name]
	return s || c
}

// shutdownTimeout is MIMOQ_SHUTDOWN_TIMEOUT as a configuration sets it, or
// the binary's default.
func shutdownTimeout(t *testing.T, v string) time.Duration {
	t.Helper()
	if v == "" {
		v = "30s"
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("MIMOQ_SHUTDOWN_TIMEOUT=%q: %v", v, err)
	}
	return d
}

// readmeConfigVars returns the variables of the README's configuration table.
func readmeConfigVars(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(path("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Configuration")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var vars []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]+)`").FindAllStringSubmatch(first, -1) {
			vars = append(vars, m[1])
		}
	}
	if len(vars) < 15 {
		t.Fatalf("found only %d variables in the README's configuration table", len(vars))
	}
	return vars
}

// TestEnvExample: .env.example shows every variable the binary reads and
// nothing else, including every variable of the README's table; what it
// sets is never empty (envconfig reads an empty value as set, not as
// "use the default").
func TestEnvExample(t *testing.T) {
	t.Parallel()
	bin := binaryVars(t)
	ex := readEnvExample(t)
	for _, m := range []map[string]string{ex.set, ex.commented} {
		for name := range m {
			if !bin[name] {
				t.Errorf(".env.example names %s, which mimoq does not read (cmd/mimoq/env.go)", name)
			}
		}
	}
	for name := range bin {
		if !ex.has(name) {
			t.Errorf(".env.example does not show %s, which mimoq reads", name)
		}
	}
	for _, name := range readmeConfigVars(t) {
		if !bin[name] {
			t.Errorf("the README documents %s, which mimoq does not read", name)
		}
		if !ex.has(name) {
			t.Errorf(".env.example does not show %s from the README's configuration table", name)
		}
	}
	for name, v := range ex.set {
		if strings.TrimSpace(v) == "" {
			t.Errorf(".env.example sets %s to an empty value; comment it out instead", name)
		}
	}
	// Exactly one Redis topology is set.
	topo := 0
	for _, name := range []string{"MIMOQ_REDIS_URL", "MIMOQ_REDIS_SENTINEL_ADDRS", "MIMOQ_REDIS_CLUSTER_ADDRS"} {
		if _, ok := ex.set[name]; ok {
			topo++
		}
	}
	if topo != 1 {
		t.Errorf(".env.example sets %d Redis topologies; want exactly one", topo)
	}
}

// yamlDocs reads every YAML document of a file.
func yamlDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// get walks a decoded YAML tree along keys (map keys, or list indexes as
// ints); nil when any step is missing.
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func strs(v any) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			out = append(out, str(x))
		}
	case string:
		out = strings.Fields(v)
	}
	return out
}

// declaredSubcommands returns the mimoq subcommands that the compose file
// and the manifests run, with where each is run.
func declaredSubcommands(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	services, _ := yamlDocs(t, path("docker-compose.yml"))[0]["services"].(map[string]any)
	for name, svc := range services {
		if slices.Contains(strs(get(svc, "profiles")), "observability") {
			continue // Prometheus and Grafana, not mimoq
		}
		if args := strs(get(svc, "command")); name != "redis" && len(args) > 0 {
			out[args[0]] = "docker-compose.yml service " + name
		}
	}
	_, objs := k8sResources(t)
	for _, o := range objs {
		if str(o["kind"]) == "Deployment" {
			out[str(get(o, "spec", "template", "spec", "containers", 0, "args", 0))] = "Deployment " + str(get(o, "metadata", "name"))
		}
	}
	return out
}

// TestCompose checks docker-compose.yml: Redis as a system of record, two
// workers that wait for a healthy Redis, serve on 0.0.0.0:8080, the mock
// behind a profile, configuration from .env with every variable one that
// .env.example shows and mimoq reads.
func TestCompose(t *testing.T) {
	t.Parallel()
	bin := binaryVars(t)
	ex := readEnvExample(t)
	raw, err := os.ReadFile(path("docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		if !ex.has(m[1]) {
			t.Errorf("docker-compose.yml interpolates ${%s}, which .env.example does not show", m[1])
		}
	}
	c := yamlDocs(t, path("docker-compose.yml"))[0]
	services, _ := c["services"].(map[string]any)
	for _, name := range []string{"redis", "worker", "serve", "mockapi"} {
		if services[name] == nil {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
	}

	// Redis: persistence, no eviction, a named volume, a health check.
	redis := services["redis"]
	if img := str(get(redis, "image")); !strings.HasPrefix(img, "redis:7") {
		t.Errorf("redis image %q; want redis:7", img)
	}
	cmd := " " + strings.Join(strs(get(redis, "command")), " ") + " "
	for _, want := range []string{" --appendonly yes ", " --appendfsync everysec ", " --maxmemory-policy noeviction "} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %q", cmd, strings.TrimSpace(want))
		}
	}
	vols, _ := c["volumes"].(map[string]any)
	named := false
	for _, v := range strs(get(redis, "volumes")) {
		src, dst, _ := strings.Cut(v, ":")
		if _, ok := vols[src]; ok && dst == "/data" {
			named = true
		}
	}
	if !named {
		t.Errorf("redis volumes %v: want a named volume (declared under volumes:) on /data", get(redis, "volumes"))
	}
	if hc := strings.Join(strs(get(redis, "healthcheck", "test")), " "); !strings.Contains(hc, "redis-cli ping") {
		t.Errorf("redis healthcheck %q; want redis-cli ping", hc)
	}

	// The mimoq services.
	workers := 0
	shutdown := shutdownTimeout(t, ex.set["MIMOQ_SHUTDOWN_TIMEOUT"])
	for name, svc := range services {
		if name == "redis" || slices.Contains(strs(get(svc, "profiles")), "observability") {
			continue // Prometheus and Grafana: TestComposeObservability
		}
		args := strs(get(svc, "command"))
		if len(args) == 0 {
			t.Errorf("service %s has no command", name)
			continue
		}
		if df := str(get(svc, "build", "dockerfile")); df != "" {
			if _, err := os.Stat(path(df)); err != nil {
				t.Errorf("service %s builds %s: %v", name, df, err)
			}
		}
		if ef := strs(get(svc, "env_file")); !slices.Equal(ef, []string{".env"}) {
			t.Errorf("service %s env_file %v; want .env", name, ef)
		}
		env, _ := get(svc, "environment").(map[string]any)
		for k := range env {
			if !bin[k] {
				t.Errorf("service %s sets %s, which mimoq does not read", name, k)
			}
		}
		if args[0] != "mockapi" {
			if cond := str(get(svc, "depends_on", "redis", "condition")); cond != "service_healthy" {
				t.Errorf("service %s depends on redis with condition %q; want service_healthy", name, cond)
			}
			if g := str(get(svc, "stop_grace_period")); g == "" {
				t.Errorf("service %s has no stop_grace_period (default 10s, below MIMOQ_SHUTDOWN_TIMEOUT %s)", name, shutdown)
			} else if d, err := time.ParseDuration(g); err != nil || d <= shutdown {
				t.Errorf("service %s stop_grace_period %s; want more than MIMOQ_SHUTDOWN_TIMEOUT %s", name, g, shutdown)
			}
		}
		switch args[0] {
		case "worker":
			n := 1
			if r := get(svc, "deploy", "replicas"); r != nil {
				n, _ = strconv.Atoi(str(r))
			}
			workers += n
			if a := str(env["MIMOQ_HTTP_ADDR"]); a != "0.0.0.0:9464" {
				t.Errorf("service %s MIMOQ_HTTP_ADDR %q; want 0.0.0.0:9464", name, a)
			}
		case "serve":
			if a := str(env["MIMOQ_HTTP_ADDR"]); a != "0.0.0.0:8080" {
				t.Errorf("service %s MIMOQ_HTTP_ADDR %q; want 0.0.0.0:8080", name, a)
			}
			if !slices.ContainsFunc(strs(get(svc, "ports")), func(p string) bool { return strings.HasSuffix(p, ":8080") }) {
				t.Errorf("service %s publishes %v; want port 8080", name, get(svc, "ports"))
			}
			if _, ok := ex.set["MIMOQ_API_TOKENS"]; !ok {
				t.Error(".env.example does not set MIMOQ_API_TOKENS, which serve requires")
			}
		case "mockapi":
			if !slices.Contains(strs(get(svc, "profiles")), "mock") {
				t.Errorf("service %s profiles %v; want mock", name, get(svc, "profiles"))
			}
			// MIMO_BASE_URL of .env.example points at it.
			i := slices.Index(args, "--addr")
			if i < 0 || i+1 >= len(args) {
				t.Fatalf("service %s command %v has no --addr", name, args)
			}
			_, port, _ := net.SplitHostPort(args[i+1])
			u, err := url.Parse(ex.set["MIMO_BASE_URL"])
			if err != nil || u.Hostname() != name || u.Port() != port {
				t.Errorf(".env.example MIMO_BASE_URL=%s; want the mock at http://%s:%s/v1", ex.set["MIMO_BASE_URL"], name, port)
			}
		}
	}
	if workers < 2 {
		t.Errorf("%d worker replicas; want at least 2", workers)
	}
	if u, err := url.Parse(ex.set["MIMOQ_REDIS_URL"]); err != nil || u.Hostname() != "redis" {
		t.Errorf(".env.example MIMOQ_REDIS_URL=%s; want the compose service redis", ex.set["MIMOQ_REDIS_URL"])
	}
}

// k8sResources reads the kustomization and the resources it lists.
func k8sResources(t *testing.T) (kust map[string]any, objs []map[string]any) {
	t.Helper()
	dir := path("deploy", "kubernetes")
	kust = yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	listed := map[string]bool{}
	for _, r := range strs(kust["resources"]) {
		listed[r] = true
		file := filepath.Join(dir, r)
		if _, err := os.Stat(file); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
			continue
		}
		objs = append(objs, yamlDocs(t, file)...)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && base != "secret.example.yaml" && !listed[base] {
			t.Errorf("%s is not in kustomization.yaml's resources", base)
		}
	}
	return kust, objs
}

func findObj(objs []map[string]any, kind, name string) map[string]any {
	for _, o := range objs {
		if str(o["kind"]) == kind && str(get(o, "metadata", "name")) == name {
			return o
		}
	}
	return nil
}

// labelsMatch reports whether selector is a subset of labels.
func labelsMatch(selector, labels any) bool {
	sel, _ := selector.(map[string]any)
	lab, _ := labels.(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if str(lab[k]) != str(v) {
			return false
		}
	}
	return true
}

// containerPort resolves a probe or Service port (a number or a port name)
// against a container's ports.
func containerPort(c any, port any) int {
	ports, _ := get(c, "ports").([]any)
	for _, p := range ports {
		n, _ := strconv.Atoi(str(get(p, "containerPort")))
		if str(get(p, "name")) == str(port) || strconv.Itoa(n) == str(port) {
			return n
		}
	}
	return 0
}

// TestKubernetes checks the manifests: the kustomization's resources, the
// Deployments' commands, environment, probes, grace period, resources and
// security context, the Service and the disruption budgets.
func TestKubernetes(t *testing.T) {
	t.Parallel()
	bin := binaryVars(t)
	kust, objs := k8sResources(t)
	if str(kust["namespace"]) == "" {
		t.Error("kustomization.yaml sets no namespace")
	}

	cm := findObj(objs, "ConfigMap", "mimoq-config")
	if cm == nil {
		t.Fatal("no ConfigMap mimoq-config")
	}
	data, _ := cm["data"].(map[string]any)
	topo := 0
	for k := range data {
		if !bin[k] {
			t.Errorf("ConfigMap sets %s, which mimoq does not read", k)
		}
		if k == "MIMOQ_REDIS_URL" || k == "MIMOQ_REDIS_SENTINEL_ADDRS" || k == "MIMOQ_REDIS_CLUSTER_ADDRS" {
			topo++
		}
		if k == "MIMO_API_KEY" || k == "MIMOQ_API_TOKENS" || strings.HasSuffix(k, "PASSWORD") {
			t.Errorf("ConfigMap holds the secret %s; it belongs in the Secret", k)
		}
	}
	if topo != 1 {
		t.Errorf("ConfigMap sets %d Redis topologies; want exactly one", topo)
	}
	shutdown := shutdownTimeout(t, str(data["MIMOQ_SHUTDOWN_TIMEOUT"]))

	secretDocs := yamlDocs(t, path("deploy", "kubernetes", "secret.example.yaml"))
	secret := secretDocs[0]
	secretKeys, _ := secret["stringData"].(map[string]any)
	if str(secret["kind"]) != "Secret" || len(secretKeys) == 0 {
		t.Fatalf("secret.example.yaml is not a Secret with stringData: %v", secret)
	}
	for k, v := range secretKeys {
		if !bin[k] {
			t.Errorf("the example Secret holds %s, which mimoq does not read", k)
		}
		if s := str(v); s != "" && !strings.Contains(s, "replace") {
			t.Errorf("the example Secret's %s is %q; want a placeholder with \"replace\" in it, never a real value", k, s)
		}
	}
	if str(get(secret, "metadata", "namespace")) != str(kust["namespace"]) {
		t.Errorf("the example Secret is in namespace %v; the kustomization deploys to %v", get(secret, "metadata", "namespace"), kust["namespace"])
	}

	deployments := map[string]map[string]any{}
	for _, o := range objs {
		if str(o["kind"]) != "Deployment" {
			continue
		}
		name := str(get(o, "metadata", "name"))
		deployments[name] = o
		t.Run(name, func(t *testing.T) { checkDeployment(t, o, bin, data, secretKeys, shutdown) })
	}
	var subs []string
	for _, d := range deployments {
		subs = append(subs, str(get(d, "spec", "template", "spec", "containers", 0, "args", 0)))
	}
	slices.Sort(subs)
	if !slices.Equal(subs, []string{"serve", "worker"}) {
		t.Errorf("Deployments run %v; want a worker and a serve Deployment", subs)
	}

	for _, o := range objs {
		switch str(o["kind"]) {
		case "Service":
			matched := false
			for _, d := range deployments {
				if !labelsMatch(get(o, "spec", "selector"), get(d, "spec", "template", "metadata", "labels")) {
					continue
				}
				matched = true
				c := get(d, "spec", "template", "spec", "containers", 0)
				ports, _ := get(o, "spec", "ports").([]any)
				for _, p := range ports {
					if containerPort(c, get(p, "targetPort")) == 0 {
						t.Errorf("Service %v targetPort %v is no port of its pods", get(o, "metadata", "name"), get(p, "targetPort"))
					}
				}
				if sub := str(get(c, "args", 0)); sub != "serve" {
					t.Errorf("Service %v selects the %s pods; want serve", get(o, "metadata", "name"), sub)
				}
			}
			if !matched {
				t.Errorf("Service %v selects no Deployment's pods", get(o, "metadata", "name"))
			}
		case "PodDisruptionBudget":
			n := 0
			for _, d := range deployments {
				if labelsMatch(get(o, "spec", "selector", "matchLabels"), get(d, "spec", "template", "metadata", "labels")) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("PodDisruptionBudget %v selects the pods of %d Deployments; want 1", get(o, "metadata", "name"), n)
			}
		}
	}

	// The same through kustomize itself, when kubectl is here.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", path("deploy", "kubernetes")).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize: %v\n%s", err, out)
		}
		if n := strings.Count(string(out), "\nkind: ") + strings.Count(string(out[:min(len(out), 200)]), "kind: "); n < len(objs) {
			t.Errorf("kubectl kustomize rendered %d objects; the resources hold %d", n, len(objs))
		}
	} else {
		t.Log("kubectl not on the PATH: the manifests were checked as YAML, not rendered by kustomize")
	}
}

func checkDeployment(t *testing.T, d map[string]any, bin map[string]bool, config, secretKeys map[string]any, shutdown time.Duration) {
	pod := get(d, "spec", "template")
	if !labelsMatch(get(d, "spec", "selector", "matchLabels"), get(pod, "metadata", "labels")) {
		t.Error("selector does not match the pod labels")
	}
	spec := get(pod, "spec")
	grace, _ := strconv.Atoi(str(get(spec, "terminationGracePeriodSeconds")))
	if time.Duration(grace)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %d; want more than MIMOQ_SHUTDOWN_TIMEOUT %s", grace, shutdown)
	}
	if get(spec, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if uid, _ := strconv.Atoi(str(get(spec, "securityContext", "runAsUser"))); uid == 0 {
		t.Error("pod runs as uid 0 (or sets none)")
	}
	containers, _ := get(spec, "containers").([]any)
	if len(containers) != 1 {
		t.Fatalf("%d containers; want 1", len(containers))
	}
	c := containers[0]
	sub := str(get(c, "args", 0))

	// Environment: variables mimoq reads; secrets from the Secret only.
	env := map[string]string{}
	for k, v := range config {
		env[k] = str(v)
	}
	if ref := str(get(c, "envFrom", 0, "configMapRef", "name")); ref != "mimoq-config" {
		t.Errorf("envFrom configMapRef %q; want mimoq-config", ref)
	}
	vars, _ := get(c, "env").([]any)
	for _, v := range vars {
		name := str(get(v, "name"))
		if !bin[name] {
			t.Errorf("env %s is not a variable mimoq reads", name)
		}
		if ref := get(v, "valueFrom", "secretKeyRef"); ref != nil {
			if str(get(ref, "name")) != "mimoq-secrets" {
				t.Errorf("env %s from Secret %v; want mimoq-secrets", name, get(ref, "name"))
			}
			if _, ok := secretKeys[str(get(ref, "key"))]; !ok {
				t.Errorf("env %s from key %v, which the example Secret does not have", name, get(ref, "key"))
			}
			continue
		}
		if name == "MIMO_API_KEY" || name == "MIMOQ_API_TOKENS" || strings.HasSuffix(name, "PASSWORD") {
			t.Errorf("env %s has a literal value; it must come from the Secret", name)
		}
		env[name] = str(get(v, "value"))
	}
	need := map[string][]string{"worker": {"MIMO_API_KEY"}, "serve": {"MIMOQ_API_TOKENS"}}[sub]
	for _, name := range need {
		found := false
		for _, v := range vars {
			found = found || (str(get(v, "name")) == name && get(v, "valueFrom", "secretKeyRef") != nil)
		}
		if !found {
			t.Errorf("%s is not taken from the Secret", name)
		}
	}

	// Probes on MIMOQ_HTTP_ADDR, which must listen on all interfaces.
	host, portStr, err := net.SplitHostPort(env["MIMOQ_HTTP_ADDR"])
	port, _ := strconv.Atoi(portStr)
	if err != nil || host != "0.0.0.0" {
		t.Errorf("MIMOQ_HTTP_ADDR %q; want 0.0.0.0:PORT (the default listens on 127.0.0.1 only)", env["MIMOQ_HTTP_ADDR"])
	}
	wantPort := map[string]int{"worker": 9464, "serve": 8080}[sub]
	if port != wantPort {
		t.Errorf("MIMOQ_HTTP_ADDR port %d; want %d", port, wantPort)
	}
	for probe, want := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if p := str(get(c, probe, "httpGet", "path")); p != want {
			t.Errorf("%s path %q; want %s", probe, p, want)
		}
		if p := containerPort(c, get(c, probe, "httpGet", "port")); p != port {
			t.Errorf("%s port %v is %d; MIMOQ_HTTP_ADDR listens on %d", probe, get(c, probe, "httpGet", "port"), p, port)
		}
	}
	if sub == "worker" {
		ann := get(pod, "metadata", "annotations")
		if str(get(ann, "prometheus.io/scrape")) != "true" || str(get(ann, "prometheus.io/port")) != portStr || str(get(ann, "prometheus.io/path")) != "/metrics" {
			t.Errorf("pod annotations %v; want Prometheus to scrape /metrics on %s", ann, portStr)
		}
	}

	// Resources and a locked-down container.
	for _, r := range [][]string{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
		if get(c, "resources", r[0], r[1]) == nil {
			t.Errorf("no resources.%s.%s", r[0], r[1])
		}
	}
	sc := get(c, "securityContext")
	if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false ||
		!slices.Contains(strs(get(sc, "capabilities", "drop")), "ALL") {
		t.Errorf("container securityContext %v; want readOnlyRootFilesystem, no privilege escalation, drop ALL", sc)
	}
	if sub == "serve" {
		mounts, _ := get(c, "volumeMounts").([]any)
		if !slices.ContainsFunc(mounts, func(m any) bool { return str(get(m, "mountPath")) == "/tmp" }) {
			t.Error("serve spools uploads to /tmp, but the read-only root has no volume there")
		}
	}
}

// dockerfile is the instructions of deploy/Dockerfile, continuation lines
// joined.
func dockerfile(t *testing.T) [][2]string {
	t.Helper()
	data, err := os.ReadFile(path("deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		instr, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, [2]string{strings.ToUpper(instr), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestDockerfile: a Go 1.26 builder, a static build, distroless (or
// scratch) as a non-root user, mimoq as the entry point, both ports exposed.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	var froms, runs []string
	var entry, user, expose, copied string
	for _, in := range dockerfile(t) {
		switch in[0] {
		case "FROM":
			froms = append(froms, in[1])
		case "RUN":
			runs = append(runs, in[1])
		case "ENTRYPOINT":
			entry = in[1]
		case "USER":
			user = in[1]
		case "EXPOSE":
			expose += " " + in[1]
		case "COPY":
			if strings.HasPrefix(in[1], "--from=") {
				copied = in[1]
			}
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26 ") {
		t.Errorf("FROM %v; want a golang:1.26 builder stage, then the runtime", froms)
	}
	if last := froms[len(froms)-1]; !strings.HasPrefix(last, "gcr.io/distroless/static") && last != "scratch" {
		t.Errorf("runtime image %q; want distroless static or scratch", last)
	}
	build := ""
	for _, r := range runs {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/mimoq"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build %q lacks %s", build, want)
		}
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("USER %q; want a non-root user", user)
	}
	if !strings.Contains(expose+" ", " 9464 ") || !strings.Contains(expose+" ", " 8080 ") {
		t.Errorf("EXPOSE%s; want 9464 and 8080", expose)
	}
	var ep []string
	if err := yaml.Unmarshal([]byte(entry), &ep); err != nil || len(ep) != 1 || !strings.HasSuffix(ep[0], "/mimoq") {
		t.Errorf("ENTRYPOINT %s; want the exec form [\".../mimoq\"]", entry)
	} else if !strings.HasSuffix(copied, " "+ep[0]) {
		t.Errorf("COPY %q does not put the binary at the ENTRYPOINT %s", copied, ep[0])
	}
}

// TestStaticBinary builds mimoq as the Dockerfile does and checks that the
// result is static (no dynamic loader, no shared library), runs, and has
// every subcommand the compose file and the manifests run; and that the
// binary accepts the settings of .env.example.
func TestStaticBinary(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "mimoq")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/mimoq")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP header: it needs a dynamic loader")
		}
	}
	if f.Section(".interp") != nil || f.Section(".dynamic") != nil {
		t.Error("the binary has a .interp or .dynamic section: it is not static")
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error(`the binary has a symbol table: -ldflags "-s -w" did not strip it`)
	}
	f.Close()

	help, err := exec.Command(out, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "worker") || !strings.Contains(string(help), "serve") {
		t.Fatalf("mimoq --help: %v\n%s", err, help)
	}

	subs := declaredSubcommands(t)
	for _, want := range []string{"worker", "serve", "mockapi"} {
		if _, ok := subs[want]; !ok {
			t.Errorf("neither the compose file nor the manifests run mimoq %s", want)
		}
	}
	for sub, where := range subs {
		if b, err := exec.Command(out, sub, "--help").CombinedOutput(); err != nil {
			t.Errorf("%s runs `mimoq %s`: mimoq %s --help: %v\n%s", where, sub, sub, err, b)
		}
	}

	// The binary accepts every value .env.example sets: the mock reads the
	// whole environment (and refuses a bad value with exit status 2) before
	// it listens.
	ex := readEnvExample(t)
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range ex.set {
		env = append(env, k+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mock := exec.CommandContext(ctx, out, "mockapi", "--addr", "127.0.0.1:0")
	mock.Env = env
	var stderr syncBuffer
	mock.Stderr = &stderr
	if err := mock.Start(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(stderr.String(), "mockapi listening") {
		if ctx.Err() != nil || mock.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = mock.Process.Signal(syscall.SIGTERM)
	_ = mock.Wait()
	if !strings.Contains(stderr.String(), "mockapi listening") {
		t.Errorf("mimoq with the settings of .env.example did not start:\n%s", stderr.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
