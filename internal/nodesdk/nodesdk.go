// Package nodesdk runs scripts against the official OpenAI Node SDK in
// tests: it installs one pinned version of the openai npm package once into
// the user cache directory and runs a script with Node beside it. Tests use
// it to prove that what mimoq serves is read by a client nobody here wrote.
package nodesdk

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// OpenAIVersion pins the official OpenAI Node SDK the tests run: the newest
// that installs and runs on Node 20 (it asks for Node 22, and npm only warns).
const OpenAIVersion = "7.59.0"

// Modules returns a node_modules directory holding openai@OpenAIVersion,
// installing it once. It fails the test when node or npm is missing.
func Modules(ctx context.Context, t testing.TB) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("npm is not on the PATH: the OpenAI SDK tests install the openai package with it (go test -short skips them)")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	root := filepath.Join(cache, "mimoq-npm")
	final := filepath.Join(root, "openai@"+OpenAIVersion)
	modules := filepath.Join(final, "node_modules")
	if installed(modules) {
		return modules
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// Install into a fresh directory, then rename it into place, so that an
	// interrupted install or a concurrent run never leaves a half-filled cache.
	tmp, err := os.MkdirTemp(root, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), []byte(`{"private":true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "openai@"+OpenAIVersion)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install openai@%s: %v\n%s", OpenAIVersion, err, out)
	}
	if !installed(filepath.Join(tmp, "node_modules")) {
		t.Fatalf("npm install openai@%s left no node_modules/openai/package.json of that version", OpenAIVersion)
	}
	// A concurrent run may have won the race: its copy is as good.
	if err := os.Rename(tmp, final); err != nil && !installed(modules) {
		t.Fatalf("move the openai package into the cache: %v", err)
	}
	return modules
}

// installed reports whether modules holds openai at the pinned version.
func installed(modules string) bool {
	b, err := os.ReadFile(filepath.Join(modules, "openai", "package.json"))
	if err != nil {
		return false
	}
	var pkg struct {
		Version string `json:"version"`
	}
	return json.Unmarshal(b, &pkg) == nil && pkg.Version == OpenAIVersion
}

// Run runs the Node script at path (an .mjs file) beside the SDK with env
// added to the environment, and returns its standard output. A script that
// fails fails the test, with its standard error.
func Run(ctx context.Context, t testing.TB, path string, env ...string) []byte {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on the PATH: the OpenAI SDK tests need Node.js 20 or later (go test -short skips them)")
	}
	modules := Modules(ctx, t)
	dir := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(dst, script, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, dst)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\nstderr:\n%s\nstdout:\n%s", filepath.Base(path), err, stderr.String(), out)
	}
	return out
}
