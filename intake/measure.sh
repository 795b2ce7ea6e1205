#!/usr/bin/env bash
# Measures `enqueue` on a generated file of 1,000,000 keys (plus 10,000 duplicates) against
# a private redis-server: wall time and peak RSS (/usr/bin/time -v) of RUNS runs, medians
# printed last; then the Go benchmarks, BenchmarkNaive (one asynq Enqueue per key) included.
# Usage: bash intake/measure.sh [RUNS]   (from the module root; needs redis-server and GNU time)
set -euo pipefail
runs=${1:-5}
dir=$(mktemp -d)
trap 'kill "$redis_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/enqueue" ./cmd/enqueue
awk 'BEGIN { for (i = 0; i < 1000000; i++) { printf "ERP%07d\n", i; if (i % 100 == 99) printf "ERP%07d\n", i - 50 } }' > "$dir/keys.txt"
port=$(( 20000 + RANDOM % 20000 ))
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >/dev/null &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
secs=(); rss=()
for i in $(seq "$runs"); do
	redis-cli -p "$port" flushall >/dev/null
	/usr/bin/time -v "$dir/enqueue" --redis-url "redis://127.0.0.1:$port/0" --erp-connection 1 \
		--actor-type Customer --file "$dir/keys.txt" --run "measure-$i" >/dev/null 2>"$dir/time.txt"
	s=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); print p[n] + (n > 1 ? p[n-1] * 60 : 0) }' "$dir/time.txt")
	r=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/time.txt")
	echo "run $i: ${s} s, peak RSS ${r} KiB"
	secs+=("$s"); rss+=("$r")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "median of $runs: $(median "${secs[@]}") s, peak RSS $(median "${rss[@]}") KiB"
go test -run '^$' -bench 'Submit/keys=1000000|DryRun|Naive' -benchtime 3x -count "$runs" ./intake
