#!/usr/bin/env bash
# `make bench`: throughput and latency figures against the real broker and
# PostgreSQL. Benchmarks print their figures; none of them is a pass/fail
# threshold. Results also land in bench-results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
start_services
export CALLSTREAM_INTEGRATION=1 CALLSTREAM_BENCH=1

out=bench-results.txt
: >"$out"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(go version)" | tee -a "$out"
# Env-gated benchmark tests print their own figures (events/s, p50/p99, bytes).
go test -count=1 -timeout 30m -run 'Bench' -v ./... 2>&1 | grep -E '^(=== RUN|--- |    |ok|FAIL|BENCH)|bench' | tee -a "$out"
# Go benchmarks (ns/op, allocations).
go test -count=1 -timeout 20m -run '^$' -bench . -benchmem ./... 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)' | tee -a "$out"
