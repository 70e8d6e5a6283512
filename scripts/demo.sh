#!/usr/bin/env bash
# make demo: a private Redis, the mock MiMo API and a worker on this machine,
# real jobs through them, then the results and the dead letters. Needs
# redis-server on the PATH; reaches no network; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
MIMOQ=${MIMOQ:-./bin/mimoq}
command -v redis-server >/dev/null || { echo "demo: redis-server is not on the PATH (Debian: apt-get install redis-server)" >&2; exit 1; }

work=$(mktemp -d /tmp/mimoq-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { # wait_for FILE REGEX: wait until FILE has a line matching REGEX, print the match
	for _ in $(seq 1 300); do
		if m=$(grep -oE "$2" "$1" 2>/dev/null | head -n1) && [ -n "$m" ]; then echo "$m"; return 0; fi
		sleep 0.1
	done
	echo "demo: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

say "starting a private Redis (unix socket, append-only file)"
redis-server --port 0 --unixsocket "$work/redis.sock" --dir "$work" --appendonly yes \
	--maxmemory-policy noeviction --daemonize no --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -s "$work/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
export MIMOQ_REDIS_URL="unix://$work/redis.sock"

say "starting the mock MiMo API (3000 requests/min per model, 5% 429s, 5% 500s, 100-300 ms latency)"
export MIMO_API_KEY="sk-demo-$RANDOM$RANDOM"
"$MIMOQ" mockapi --addr 127.0.0.1:0 --rpm 3000 --latency 200ms --jitter 100ms \
	--rate-429 0.05 --rate-500 0.05 --seed 42 2>"$work/mock.log" &
pids+=($!)
mock=$(wait_for "$work/mock.log" 'http://127\.0\.0\.1:[0-9]+')
echo "mock API at $mock/v1"
export MIMO_BASE_URL="$mock/v1"

# mimo-v2-legacy is a model this mimoq accepts but the API no longer serves:
# its jobs fail with 400 "Unsupported model" (terminal) and are dead-lettered.
export MIMOQ_MODELS="mimo-v2.6-pro=131072,mimo-v2.6-flash=131072,mimo-v2-legacy"
# The live catalog (GET /models, on by default) would refuse mimo-v2-legacy at
# submit time already; the demo turns it off to show what a retired model's
# dead letters look like, and how one command moves them to its successor.
export MIMOQ_CATALOG_INTERVAL=0
export MIMOQ_RPM=3000 MIMOQ_BACKOFF_BASE=200ms MIMOQ_BACKOFF_MAX=2s MIMOQ_LOG_FORMAT=json

say "starting a worker (3000 requests/min per model, fleet-wide)"
MIMOQ_HTTP_ADDR=127.0.0.1:0 "$MIMOQ" worker 2>"$work/worker.log" &
pids+=($!)
wait_for "$work/worker.log" '"message":"worker started"' >/dev/null

say "a request with an unknown model is refused at submit time (exit status 2)"
set +e
"$MIMOQ" submit --model gpt-4o --prompt "hello"
echo "exit status $?"
set -e

say "one request, waiting for its answer"
"$MIMOQ" submit --model mimo-v2.6-flash --prompt "What is a dead-letter queue?" --wait

say "a batch file with a bad line is refused whole, nothing enqueued (exit status 2)"
printf '%s\n' '{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}}' \
	'{"custom_id":"b","body":{"model":"mimo-v2.6-flash","messages":[]}}' >"$work/bad.jsonl"
set +e
"$MIMOQ" batch submit "$work/bad.jsonl"
echo "exit status $?"
set -e

say "a batch of 500 requests (OpenAI Batch format), 8 of them for a model the API has retired"
for i in $(seq 1 500); do
	model=mimo-v2.6-flash
	case $((i % 5)) in 0) model=mimo-v2.6-pro;; esac
	[ $((i % 60)) -eq 0 ] && model=mimo-v2-legacy
	printf '{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"%s","messages":[{"role":"user","content":"Give me fact number %d about queues"}],"max_tokens":64}}\n' "$i" "$model" "$i"
done >"$work/batch.jsonl"
id=$("$MIMOQ" batch submit "$work/batch.jsonl" --id demo-batch)
echo "batch $id submitted; watching it"
"$MIMOQ" batch status "$id" --watch || true

say "results: $work/results.jsonl (first 2 lines)"
"$MIMOQ" batch results "$id" -o "$work/results.jsonl" --errors "$work/errors.jsonl"
head -n 2 "$work/results.jsonl" | cut -c 1-240
say "errors file (the failed lines)"
cut -c 1-240 "$work/errors.jsonl"

if "$MIMOQ" dlq list --help >/dev/null 2>&1; then
	say "the dead letters, and why they died"
	"$MIMOQ" dlq list --batch "$id"
	first=$("$MIMOQ" dlq list --batch "$id" --json --limit 1 | grep -oE '"id":"[^"]+"' | head -n1 | cut -d'"' -f4)
	[ -n "$first" ] && "$MIMOQ" dlq show "$first"
fi

say "the retired model's dead letters, rewritten to its successor and run again"
"$MIMOQ" dlq requeue --all --model mimo-v2-legacy --set-model mimo-v2.6-flash --yes
"$MIMOQ" batch status "$id" --watch || true

say "the model catalog in use"
"$MIMOQ" models

say "lanes"
"$MIMOQ" lane list

say "the mock's view: duplicates (must be 0) and rate-limit peaks"
"$MIMOQ" mockapi --help >/dev/null
if command -v curl >/dev/null; then
	curl -fsS "$mock/mock/stats" | grep -oE '"(total_requests|duplicates|max_calls_per_job)":[0-9]+' | tr '\n' ' '
	echo
fi
echo
echo "demo finished; everything it started is being stopped"
