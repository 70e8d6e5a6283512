#!/usr/bin/env bash
# scripts/sizing.sh: the measurements behind docs/deploy.md "Sizing".
#
#   go build -o /tmp/mimoq ./cmd/mimoq      # not -race: the race detector
#   MIMOQ=/tmp/mimoq scripts/sizing.sh      # multiplies CPU and memory
#
# A private redis-server (AOF everysec, noeviction, as in production), the
# mock API with no latency and no limit, and then:
#   1. Redis memory per queued job and per stored result (INFO used_memory
#      before and after N jobs, N=10,000 by default);
#   2. jobs/s of one worker process, then of two (mock: no latency);
#   3. a worker's RSS with every slot of MIMOQ_CONCURRENCY=50 and =500 in
#      flight (mock latency 3 s).
# Reaches no network; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
MIMOQ=${MIMOQ:-./bin/mimoq}
N=${N:-10000}
command -v redis-server >/dev/null || { echo "sizing: redis-server is not on the PATH" >&2; exit 1; }

work=$(mktemp -d /tmp/mimoq-sizing.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

redis-server --port 0 --unixsocket "$work/redis.sock" --dir "$work" --appendonly yes --appendfsync everysec \
	--maxmemory-policy noeviction --save "" --daemonize no --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -s "$work/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
rcli() { redis-cli -s "$work/redis.sock" "$@"; }
used() { rcli info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }

export MIMOQ_REDIS_URL="unix://$work/redis.sock" MIMO_API_KEY="sk-sizing" MIMOQ_LOG_FORMAT=json
export MIMOQ_RPM=0 MIMOQ_TPM=0 MIMOQ_LOG_LEVEL=info
"$MIMOQ" mockapi --addr 127.0.0.1:0 --rpm 0 --tpm 0 >/dev/null 2>"$work/mock.log" &
mock_pid=$!
pids+=($!)
for _ in $(seq 1 100); do grep -q 'listening on' "$work/mock.log" 2>/dev/null && break; sleep 0.05; done
mock=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$work/mock.log" | head -n1)
export MIMO_BASE_URL="$mock/v1"
mockcfg() { curl -fsS -X PUT -H 'Content-Type: application/json' -d "$1" "$mock/mock/config" >/dev/null; }

batch() { # batch FILE N: N requests of about 130 bytes each
	for i in $(seq 1 "$2"); do
		printf '{"custom_id":"req-%d","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Give me fact number %d about queues"}],"max_tokens":64}}\n' "$i" "$i"
	done >"$1"
}

worker() { # worker CONCURRENCY: start a worker, print its PID
	local addr log=$work/worker.$RANDOM.log
	# stdout elsewhere: $(worker …) must not wait for the worker to exit.
	MIMOQ_CONCURRENCY=$1 MIMOQ_HTTP_ADDR=127.0.0.1:0 "$MIMOQ" worker >/dev/null 2>"$log" &
	local pid=$!
	for _ in $(seq 1 400); do grep -q '"worker started"' "$log" 2>/dev/null && break; sleep 0.025; done
	echo "$pid"
}

now() { date +%s.%N; }
# cpu PID: CPU seconds (user+system) the process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
redis_pid=${pids[0]}
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%d", n / (b - a) }'; }

echo "== Redis memory ($N jobs)"
batch "$work/batch.jsonl" "$N"
base=$(used)
"$MIMOQ" batch submit "$work/batch.jsonl" --id sizing >/dev/null
queued=$(used)
echo "queued:  $(( (queued - base) / N )) bytes per job (used_memory $base -> $queued)"

echo "== throughput, one worker (concurrency 50, mock without latency)"
w=$(worker 50); pids+=("$w")
c0=$(cpu "$w"); r0=$(cpu "$redis_pid"); m0=$(cpu "$mock_pid")
t0=$(now)
"$MIMOQ" batch status sizing --watch >/dev/null
t1=$(now)
c1=$(cpu "$w"); r1=$(cpu "$redis_pid"); m1=$(cpu "$mock_pid")
kill -TERM "$w"; wait "$w" 2>/dev/null || true
echo "1 worker: $(rate "$N" "$t0" "$t1") jobs/s"
awk -v n="$N" -v w="$c1" -v w0="$c0" -v r="$r1" -v r0="$r0" -v m="$m1" -v m0="$m0" 'BEGIN {
	printf "CPU per 1000 jobs: worker %.2f s, redis-server %.2f s, mock %.2f s\n", (w-w0)*1000/n, (r-r0)*1000/n, (m-m0)*1000/n }'
rcli bgrewriteaof >/dev/null; sleep 1
stored=$(used)
echo "stored:  $(( (stored - base) / N )) bytes per result (used_memory $base -> $stored)"

echo "== throughput, two workers"
"$MIMOQ" batch submit "$work/batch.jsonl" --id sizing-2 >/dev/null
w1=$(worker 50); w2=$(worker 50); pids+=("$w1" "$w2")
t0=$(now)
"$MIMOQ" batch status sizing-2 --watch >/dev/null
t1=$(now)
kill -TERM "$w1" "$w2"; wait "$w1" "$w2" 2>/dev/null || true
echo "2 workers: $(rate "$N" "$t0" "$t1") jobs/s together"

echo "== worker RSS with every slot in flight (mock latency 3s)"
mockcfg '{"latency":"3s"}'
for c in 50 500; do
	batch "$work/rss.jsonl" $((c * 3))
	"$MIMOQ" batch submit "$work/rss.jsonl" --id "rss-$c" >/dev/null
	w=$(worker "$c"); pids+=("$w")
	sleep 5
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$w/status")
	"$MIMOQ" batch status "rss-$c" --watch >/dev/null
	hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$w/status")
	kill -TERM "$w"; wait "$w" 2>/dev/null || true
	echo "concurrency $c: RSS $((rss / 1024)) MiB in flight, peak $((hwm / 1024)) MiB"
done
