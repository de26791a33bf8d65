#!/usr/bin/env bash
# `make test`: formatting, vet, then every test -- unit and integration --
# against a real Kafka broker and a real PostgreSQL server, which it starts.
# With CALLSTREAM_INTEGRATION=1 a missing service fails the run; it never
# skips the integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "FAIL: Go is not installed (need Go 1.26 or later)" >&2; exit 1; }

scripts/lint.sh

source scripts/tools.sh
ensure_tools
source scripts/services.sh
start_services
export CALLSTREAM_INTEGRATION=1

# The webhook isolation test compares delivery latencies with and without
# bad neighbours, so it runs after the rest, with the machine to itself:
# not beside the crash tests of other packages, and with the broker and
# PostgreSQL (which it does not use) stopped, since their work after the
# other tests (log cleaning, autovacuum, the JVM's collector) takes CPU
# the plug-in needs, most of all in the runs with neighbours, which need
# more. All the test's log lines (scheduling probe, saves, CPU per event)
# are kept in the output, so a failure shows what the machine did.
isolation='^TestIsolationFromBadEndpoints$'
go test -count=1 -timeout 18m -skip "$isolation" "$@" ./...
stop_services
settle 60
go test -count=1 -timeout 5m -run "$isolation" -v ./consumers/webhooks | grep -E '^(---|ok|FAIL)|isolation_test.go:[0-9]+:'

