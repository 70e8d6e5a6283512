package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/redistest"
)

// leakForms are the ways a secret may hide in stored or logged text: as it
// is, JSON \u-escaped, and base64 (standard and URL alphabets, at each of
// the three alignments it can have inside a longer encoded value).
func leakForms(secret string) []string {
	forms := []string{secret}
	var lower, upper strings.Builder
	for _, r := range secret {
		fmt.Fprintf(&lower, `\u%04x`, r)
		fmt.Fprintf(&upper, `\u%04X`, r)
	}
	forms = append(forms, lower.String(), upper.String())
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		for shift := range 3 {
			pad := strings.Repeat("\x00", shift)
			s := enc.EncodeToString([]byte(pad + secret))
			// Drop the characters that also encode the padding before and
			// whatever follows after: what is left appears in any encoding
			// of a text that holds the secret at this alignment.
			start := (shift*8 + 5) / 6
			end := ((shift + len(secret)) * 8) / 6
			if end > len(s) {
				end = len(s)
			}
			forms = append(forms, s[start:end])
		}
	}
	return forms
}

// findLeak reports where in text a form of secret appears.
func findLeak(text, secret string) string {
	for _, f := range leakForms(secret) {
		if i := strings.Index(text, f); i >= 0 {
			lo, hi := max(0, i-80), min(len(text), i+len(f)+80)
			return fmt.Sprintf("%q found: …%q…", f, text[lo:hi])
		}
	}
	return ""
}

// TestSecurityAPIKeyStoredNowhere runs a batch through every path a job can
// take — success, retries (429 with Retry-After, 500, truncated bodies),
// terminal failures (an unknown model, 404), and a burst of 401s (the key is
// changed at the API, the lane pauses, the key is put back, an operator
// resumes the lane) — and then looks for the API key everywhere mimoq
// writes: every key and value in Redis, the logs of worker, mock and serve,
// the dead-letter export, the results and errors files, and job records.
// It appears nowhere, in no encoding.
func TestSecurityAPIKeyStoredNowhere(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--seed", "5", "--latency", "20ms")
	key := f.mock.Key
	f.mock.Configure(t, map[string]any{"rate_429": 0.05, "rate_500": 0.1, "rate_truncate": 0.03,
		"fault_retry_after": "50ms", "error_shape": "mixed"})
	srv := f.startServe()

	var lines []string
	for i := range 150 {
		model := "mimo-v2.6-flash"
		if i%10 == 0 {
			model = ghostModel
		}
		lines = append(lines, batchLine(fmt.Sprintf("sec-%d", i), model, fmt.Sprintf("line %d", i)))
	}
	f.submitBatchFile(writeLines(t, lines...), "sec")
	w := f.startWorker("MIMOQ_CONCURRENCY=10", "MIMOQ_RPM=600", "MIMOQ_TPM=0", "MIMOQ_MAX_ATTEMPTS=3", "MIMOQ_LOG_LEVEL=debug")
	Eventually(t, 2*time.Minute, "a third of the batch done", func() bool {
		b, err := f.client.GetBatch(context.Background(), "sec")
		return err == nil && b.Succeeded+b.Dead >= 50
	})

	// The 401 burst: the API stops taking the key; the worker dead-letters
	// what it gets 401 for and pauses the lane.
	f.mock.Configure(t, map[string]any{"key": "sk-rotated-" + enqueue.NewID()})
	Eventually(t, time.Minute, "lane paused after 401", func() bool {
		out, _, code := f.run("lane", "list", "--json")
		return code == 0 && strings.Contains(out, `"model":"mimo-v2.6-flash","status":"paused"`)
	})
	f.mock.Configure(t, map[string]any{"key": key})
	if _, stderr, code := f.run("lane", "resume", "mimo-v2.6-flash"); code != 0 {
		t.Fatalf("lane resume exited %d: %s", code, stderr)
	}
	b, jobs := f.waitBatchFinal("sec", 4*time.Minute)
	if b.Succeeded+b.Dead != len(lines) {
		t.Fatalf("batch %+v: not every line final", b)
	}
	unauthorized := 0
	for _, j := range jobs {
		if j.Error != nil && j.Error.StatusCode == 401 {
			unauthorized++
		}
	}
	if unauthorized == 0 {
		t.Fatal("no job was refused with 401: the burst was not exercised")
	}

	// Everything mimoq wrote or printed.
	places := map[string]string{"redis": redisDump(t, f.rdb)}
	dir := t.TempDir()
	res, errs := filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "errors.jsonl")
	for _, args := range [][]string{
		{"batch", "results", "sec", "-o", res, "--errors", errs},
		{"dlq", "export"},
		{"dlq", "list", "--json"},
		{"batch", "status", "sec", "--json"},
		{"stats", "--json"},
		{"lane", "list", "--json"},
	} {
		out, stderr, code := f.run(args...)
		if code != 0 {
			t.Fatalf("%v exited %d: %s", args, code, stderr)
		}
		places[strings.Join(args, " ")] = out + stderr
	}
	for _, p := range []string{res, errs} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		places[filepath.Base(p)] = string(data)
	}
	dead, shown := 0, 0
	for _, j := range jobs {
		if j.State != enqueue.StateDead {
			continue
		}
		dead++
		// Each kind of dead letter once or twice is enough: the export and
		// the Redis dump above hold them all.
		if shown++; shown > 4 && (j.Error == nil || j.Error.StatusCode != 401) {
			continue
		}
		out, _, _ := f.run("dlq", "show", j.ID, "--json")
		places["dlq show "+j.ID] = out
		out, _, _ = f.run("job", "get", j.ID, "--json")
		places["job get "+j.ID] = out
	}
	_, body := srv.call(t, "GET", "/v1/batches/sec/results", srv.Token, "", nil)
	places["serve results"] = string(body)
	_, body = srv.call(t, "GET", "/v1/dlq?limit=1000", srv.Token, "", nil)
	places["serve dlq"] = string(body)
	places["worker log"] = w.Output()
	places["mock log"] = f.mock.Output()
	places["serve log"] = srv.Output()

	for where, text := range places {
		if leak := findLeak(text, key); leak != "" {
			t.Errorf("the API key appears in %s: %s", where, leak)
		}
	}
	if !strings.Contains(places["dlq export"], `"status_code":401`) {
		t.Errorf("the export holds no 401 dead letter; the scan proves little:\n%s", tail(places["dlq export"], 2000))
	}
	t.Logf("scanned %d places (%d bytes of Redis); %d dead letters, %d of them 401", len(places), len(places["redis"]), dead, unauthorized)
}

// TestSecurityServeAuth checks `mimoq serve` from outside: every route but
// health needs one of the tokens; a missing, wrong, mangled or query-string
// token gets 401 and no data; request bodies over the limits are refused.
func TestSecurityServeAuth(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv := f.startServe("--max-job-bytes", "4KiB", "--max-batch-bytes", "8KiB")
	// A batch with data another caller must not see.
	secret := "confidential-" + enqueue.NewID()
	f.submitBatchFile(writeLines(t, batchLine("private-1", "mimo-v2.6-flash", secret)), "private")
	jobID := f.getJobIDs("private")[0]

	routes := []struct{ method, path string }{
		{"POST", "/v1/jobs"}, {"GET", "/v1/jobs/" + jobID}, {"GET", "/v1/jobs/" + jobID + "?wait=1s"},
		{"POST", "/v1/batches"}, {"GET", "/v1/batches"}, {"GET", "/v1/batches/private"},
		{"GET", "/v1/batches/private/results"}, {"POST", "/v1/batches/private/cancel"},
		{"GET", "/v1/dlq"}, {"GET", "/v1/dlq/" + jobID}, {"POST", "/v1/dlq/requeue"}, {"GET", "/metrics"},
	}
	bad := []struct{ name, header string }{
		{"no token", ""},
		{"wrong token", "Bearer wrong-" + srv.Token},
		{"token prefix", "Bearer " + srv.Token[:len(srv.Token)-1]},
		{"token with suffix", "Bearer " + srv.Token + "x"},
		{"basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+srv.Token))},
		{"empty bearer", "Bearer "},
		{"token without scheme", srv.Token},
	}
	for _, r := range routes {
		for _, b := range bad {
			status, body := rawCall(t, r.method, srv.URL+r.path, b.header, []byte(`{}`))
			if status != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: status %d, want 401: %.200s", r.method, r.path, b.name, status, body)
			}
			if strings.Contains(string(body), secret) || strings.Contains(string(body), "private-1") {
				t.Errorf("%s %s with %s revealed the batch's data", r.method, r.path, b.name)
			}
		}
		// A token in the URL is not a token.
		status, _ := rawCall(t, r.method, srv.URL+r.path+sep(r.path)+"token="+srv.Token+"&access_token="+srv.Token, "", []byte(`{}`))
		if status != http.StatusUnauthorized {
			t.Errorf("%s %s with the token in the query: status %d, want 401", r.method, r.path, status)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _ := rawCall(t, "GET", srv.URL+p, "", nil); status != 200 {
			t.Errorf("GET %s without a token: %d, want 200", p, status)
		}
	}
	// The operator page shows nothing without a session.
	for _, p := range []string{"/ui", "/ui/", "/monitoring"} {
		status, body := rawCall(t, "GET", srv.URL+p, "Bearer "+srv.Token, nil)
		if status == 200 && (strings.Contains(string(body), "private-1") || strings.Contains(string(body), jobID)) {
			t.Errorf("GET %s without a session cookie shows batch data", p)
		}
	}
	// With the token, the same data is there.
	if status, body := rawCall(t, "GET", srv.URL+"/v1/batches/private", "Bearer "+srv.Token, nil); status != 200 || !strings.Contains(string(body), `"total":1`) {
		t.Errorf("the batch with the token: %d %.200s", status, body)
	}
	if status, body := rawCall(t, "GET", srv.URL+"/v1/jobs/"+jobID, "Bearer "+srv.Token, nil); status != 200 || !strings.Contains(string(body), "private-1") {
		t.Errorf("the job with the token: %d %.200s", status, body)
	}

	// Body limits.
	big := fmt.Sprintf(`{"body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":%q}]}}`, strings.Repeat("x", 5000))
	if status, body := rawCall(t, "POST", srv.URL+"/v1/jobs", "Bearer "+srv.Token, []byte(big)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /v1/jobs of 5 KB over a 4 KiB limit: %d %.300s; want 413", status, body)
	}
	var batch []string
	for i := range 100 {
		batch = append(batch, batchLine(fmt.Sprintf("b-%d", i), "mimo-v2.6-flash", strings.Repeat("y", 100)))
	}
	if status, body := rawCall(t, "POST", srv.URL+"/v1/batches", "Bearer "+srv.Token, []byte(strings.Join(batch, "\n"))); status != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /v1/batches of 16 KB over an 8 KiB limit: %d %.300s; want 413", status, body)
	}
	for _, k := range f.queueKeys() {
		if strings.Contains(k, "batch:{") && !strings.Contains(k, "private") {
			t.Errorf("an over-limit upload left %s behind", k)
		}
	}
	// Garbage is refused as such, not as a server error.
	for _, body := range []string{`{`, `[]`, `{"body":"x"}`, `{"body":{"model":"mimo-v2.6-flash"}}`, "\xff\xfe"} {
		if status, out := rawCall(t, "POST", srv.URL+"/v1/jobs", "Bearer "+srv.Token, []byte(body)); status != 400 {
			t.Errorf("POST /v1/jobs %q: %d %.200s; want 400", body, status, out)
		}
	}
	if leak := findLeak(srv.Output(), srv.Token); leak != "" {
		t.Errorf("serve logged its token: %s", leak)
	}
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// rawCall sends one request with an Authorization header as given ("" for
// none) and returns the status and body.
func rawCall(t *testing.T, method, url, auth string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// getJobIDs lists the job IDs of a batch, final or not, in input order.
func (f *fleet) getJobIDs(batchID string) []string {
	f.t.Helper()
	out, stderr, code := f.run("batch", "status", batchID, "--json")
	if code != 0 {
		f.t.Fatalf("batch status: %s", stderr)
	}
	var b enqueue.Batch
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		f.t.Fatal(err)
	}
	// The batch's job IDs follow from its ID, creation time and line.
	var ids []string
	for i := range b.Total {
		id := records.BatchJobID(batchID, b.CreatedAt.UnixMilli(), i)
		if j, err := f.client.Get(context.Background(), id); err == nil && j.BatchID == batchID {
			ids = append(ids, id)
		}
	}
	if len(ids) != b.Total {
		f.t.Fatalf("batch %s: %d job records, total %d", batchID, len(ids), b.Total)
	}
	return ids
}

// testCA is a throwaway certificate authority and a server certificate for
// 127.0.0.1 that it signed, written as PEM files.
type testCA struct {
	caFile, certFile, keyFile string
}

func newTestCA(t *testing.T, dir, name string) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA{caFile: filepath.Join(dir, name+"-ca.pem"), certFile: filepath.Join(dir, name+"-cert.pem"), keyFile: filepath.Join(dir, name+"-key.pem")}
	for file, block := range map[string]*pem.Block{
		ca.caFile: {Type: "CERTIFICATE", Bytes: caDER}, ca.certFile: {Type: "CERTIFICATE", Bytes: srvDER},
		ca.keyFile: {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

// redisHasTLS reports whether redis-server was built with TLS.
func redisHasTLS(t *testing.T) bool {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return false
	}
	out, _ := exec.Command(path, "--port", "0", "--tls-port", "0", "--loglevel", "verbose").CombinedOutput()
	return !strings.Contains(string(out), "not built with TLS") && !strings.Contains(string(out), "Bad directive")
}

// setupRedis is setup with the test's own Redis.
func setupRedis(t *testing.T, rs *redistest.Server, mockFlags ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, redis: rs}
	f.rdb = rs.Client()
	key := "sk-e2e-" + enqueue.NewID()
	f.mock = StartMock(t, bin, key, mockFlags...)
	models, err := apiclient.ParseModels(testModels)
	if err != nil {
		t.Fatal(err)
	}
	f.client, err = enqueue.NewClient(enqueue.ClientConfig{Redis: f.rdb, Models: models})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.client.Close() })
	f.env = []string{
		"MIMOQ_REDIS_URL=" + rs.URL(), "MIMO_API_KEY=" + key, "MIMO_BASE_URL=" + f.mock.URL,
		"MIMOQ_MODELS=" + testModels, "MIMOQ_CATALOG_INTERVAL=0", "MIMOQ_BACKOFF_BASE=20ms", "MIMOQ_BACKOFF_MAX=200ms", "MIMOQ_LOG_LEVEL=debug",
	}
	return f
}

// TestSecurityRedisPasswordAndTLS runs mimoq against a Redis that requires
// a password and, when redis-server is built with TLS, speaks TLS with a
// certificate from a private CA: a worker and the CLI connect with
// redis://:pw@ and rediss://:pw@ plus MIMOQ_REDIS_CA_FILE, and jobs run.
// Without the password, with a wrong one, without the CA or with another
// CA, commands fail within seconds with a message that names
// MIMOQ_REDIS_URL and shows no password.
func TestSecurityRedisPasswordAndTLS(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test (skipped under -short)")
	}
	pw := "pw-" + enqueue.NewID()
	dir := t.TempDir()
	tls := redisHasTLS(t)
	var ca, other testCA
	opts := redistest.Options{Password: pw}
	tlsAddr := ""
	if tls {
		ca, other = newTestCA(t, dir, "good"), newTestCA(t, dir, "other")
		tlsAddr = FreeAddr(t)
		_, port, _ := net.SplitHostPort(tlsAddr)
		opts.Args = []string{"--tls-port", port, "--tls-cert-file", ca.certFile, "--tls-key-file", ca.keyFile,
			"--tls-ca-cert-file", ca.caFile, "--tls-auth-clients", "no"}
	} else {
		t.Log("redis-server is not built with TLS: only the password is tested")
	}
	f := setupRedis(t, redistest.NewWithOptions(t, opts), "--rpm", "1000000", "--tpm", "0")
	plain := "redis://:" + pw + "@" + f.redis.Addr() + "/0"
	workerURL := plain
	var workerEnv []string
	if tls {
		workerURL = "rediss://:" + pw + "@" + tlsAddr + "/0"
		workerEnv = []string{"MIMOQ_REDIS_CA_FILE=" + ca.caFile}
	}

	// It works: submit over one, run over the other.
	path := writeLines(t, batchLine("p-1", "mimo-v2.6-flash", "a"), batchLine("p-2", "mimo-v2.6-flash", "b"))
	if _, stderr, code := f.runEnv([]string{"MIMOQ_REDIS_URL=" + plain}, "batch", "submit", path, "--id", "pw"); code != 0 {
		t.Fatalf("batch submit with the password: exit %d: %s", code, stderr)
	}
	w := f.startWorker(append([]string{"MIMOQ_REDIS_URL=" + workerURL, "MIMOQ_RPM=1000000", "MIMOQ_TPM=0"}, workerEnv...)...)
	b, _ := f.waitBatchFinal("pw", 2*time.Minute)
	if b.Succeeded != 2 {
		t.Fatalf("batch %+v over %s; want 2 succeeded", b, strings.Replace(workerURL, pw, "PW", 1))
	}
	if tls {
		// The CLI over TLS too.
		out, stderr, code := f.runEnv(append([]string{"MIMOQ_REDIS_URL=" + workerURL}, workerEnv...), "batch", "status", "pw", "--json")
		if code != 0 || !strings.Contains(out, `"succeeded":2`) {
			t.Errorf("batch status over TLS: exit %d, %s %s", code, out, stderr)
		}
	}

	type failCase struct {
		name string
		env  []string
		code int
		want []string
	}
	cases := []failCase{
		{"no password", []string{"MIMOQ_REDIS_URL=redis://" + f.redis.Addr() + "/0"}, 1, []string{"MIMOQ_REDIS_URL", "NOAUTH"}},
		{"wrong password", []string{"MIMOQ_REDIS_URL=redis://:wrong-" + pw + "@" + f.redis.Addr() + "/0"}, 1, []string{"MIMOQ_REDIS_URL"}},
		{"password in a bad URL", []string{"MIMOQ_REDIS_URL=redis://:" + pw + "@" + f.redis.Addr() + "/zero"}, 2, []string{"MIMOQ_REDIS_URL"}},
	}
	if tls {
		cases = append(cases,
			failCase{"TLS without the CA", []string{"MIMOQ_REDIS_URL=" + workerURL}, 1, []string{"MIMOQ_REDIS_URL", "certificate"}},
			failCase{"TLS with another CA", []string{"MIMOQ_REDIS_URL=" + workerURL, "MIMOQ_REDIS_CA_FILE=" + other.caFile}, 1, []string{"MIMOQ_REDIS_URL", "certificate"}},
			failCase{"CA file missing", []string{"MIMOQ_REDIS_URL=" + workerURL, "MIMOQ_REDIS_CA_FILE=" + filepath.Join(dir, "nope.pem")}, 2, []string{"MIMOQ_REDIS_CA_FILE"}},
			failCase{"CA file not PEM", []string{"MIMOQ_REDIS_URL=" + workerURL, "MIMOQ_REDIS_CA_FILE=" + path}, 2, []string{"MIMOQ_REDIS_CA_FILE"}},
			failCase{"CA file without TLS", []string{"MIMOQ_REDIS_URL=" + plain, "MIMOQ_REDIS_CA_FILE=" + ca.caFile}, 2, []string{"MIMOQ_REDIS_CA_FILE", "rediss://"}},
			failCase{"TLS to the plain port", []string{"MIMOQ_REDIS_URL=rediss://:" + pw + "@" + f.redis.Addr() + "/0", "MIMOQ_REDIS_CA_FILE=" + ca.caFile}, 1, []string{"MIMOQ_REDIS_URL"}},
			failCase{"plain to the TLS port", []string{"MIMOQ_REDIS_URL=redis://:" + pw + "@" + tlsAddr + "/0"}, 1, []string{"MIMOQ_REDIS_URL"}},
		)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, stderr, code := f.runEnv(c.env, "batch", "status", "pw")
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
			if strings.Contains(stderr, pw) {
				t.Errorf("the error shows the password: %s", stderr)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %s to fail", d)
			}
		})
	}
	for where, text := range map[string]string{"worker log": w.Output(), "mock log": f.mock.Output()} {
		if leak := findLeak(text, pw); leak != "" {
			t.Errorf("the Redis password appears in the %s: %s", where, leak)
		}
	}
}
