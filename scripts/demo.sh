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

say "starting the mock MiMo API (5% 429s, 5% 500s, 100-300 ms latency)"
export MIMO_API_KEY="sk-demo-$RANDOM$RANDOM"
"$MIMOQ" mockapi --addr 127.0.0.1:0 --latency 200ms --jitter 100ms \
	--rate-429 0.05 --rate-500 0.05 --seed 42 2>"$work/mock.log" &
pids+=($!)
mock=$(wait_for "$work/mock.log" 'http://127\.0\.0\.1:[0-9]+')
echo "mock API at $mock/v1"
export MIMO_BASE_URL="$mock/v1"

# mimo-v2-legacy is a model this mimoq accepts but the API no longer serves:
# its jobs fail with 404 (terminal) and are dead-lettered.
export MIMOQ_MODELS="mimo-v2-pro=131072,mimo-v2-omni=131072,mimo-v2-tts,mimo-v2-flash=65536,mimo-v2-legacy"
export MIMOQ_RPM=600 MIMOQ_BACKOFF_BASE=200ms MIMOQ_BACKOFF_MAX=2s MIMOQ_LOG_FORMAT=json

say "starting a worker (600 requests/min per model, fleet-wide)"
MIMOQ_HTTP_ADDR=127.0.0.1:0 "$MIMOQ" worker 2>"$work/worker.log" &
pids+=($!)
wait_for "$work/worker.log" '"message":"worker started"' >/dev/null

say "a request with an unknown model is refused at submit time (exit status 2)"
set +e
"$MIMOQ" submit --model gpt-4o --prompt "hello"
echo "exit status $?"
set -e

say "submitting 30 requests"
ids=()
for i in $(seq 1 24); do
	ids+=("$("$MIMOQ" submit --model mimo-v2-flash --prompt "Give me fact number $i about queues")")
done
for i in 1 2 3; do ids+=("$("$MIMOQ" submit --model mimo-v2-pro --prompt "Think about $i")"); done
ids+=("$("$MIMOQ" submit --model mimo-v2-tts --prompt "Read this aloud")")
for i in 1 2; do ids+=("$("$MIMOQ" submit --model mimo-v2-legacy --prompt "Old model $i")"); done
echo "${#ids[@]} jobs queued"

say "results"
ok=0 dead=0
for id in "${ids[@]}"; do
	if out=$("$MIMOQ" job get "$id" --wait 60s --json 2>/dev/null); then :; fi
	state=$(printf '%s' "$out" | grep -oE '"state":"[a-z]+"' | head -n1 | cut -d'"' -f4)
	attempts=$(printf '%s' "$out" | grep -oE '"attempts":[0-9]+' | head -n1 | cut -d: -f2)
	model=$(printf '%s' "$out" | grep -oE '"model":"[^"]+"' | head -n1 | cut -d'"' -f4)
	printf '%s  %-15s %-10s attempts=%s\n' "$id" "$model" "$state" "$attempts"
	case $state in succeeded) ok=$((ok+1));; dead) dead=$((dead+1)); last_dead=$id;; esac
done
echo "succeeded: $ok, dead: $dead"

say "one answer"
"$MIMOQ" submit --model mimo-v2-flash --prompt "What is a dead-letter queue?" --wait

if [ -n "${last_dead:-}" ]; then
	say "a dead letter, with its attempt history"
	"$MIMOQ" job get "$last_dead" || true
fi

say "lanes"
"$MIMOQ" lane list

say "the mock's view: requests, statuses, duplicates"
curl -fsS "$mock/mock/stats" 2>/dev/null | head -c 600 || true
echo
