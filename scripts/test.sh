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

go test -count=1 -timeout 18m "$@" ./...
