#!/usr/bin/env bash
# `make lint` (and the first step of `make test`): formatting, vet,
# staticcheck, a tidy go.mod, and the dependency rules of the layout:
#   - Kafka client code lives under pkg/ only: nothing in producer/,
#     consumers/ or schemas/ may depend on segmentio/kafka-go, except the
#     test-support packages named *test (consumers/consumerstest, like
#     net/http/httptest), which reach the broker through pkg/ and which
#     only _test.go files may import;
#   - producer/ and consumers/ never import each other (they meet on the bus
#     through schemas/);
#   - schemas/ and pkg/ never import producer/, consumers/ or cmd/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
ensure_lint_tools
fail=0
say() { echo "FAIL: $*" >&2; fail=1; }

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
[[ -z $unformatted ]] || say "gofmt would change: $unformatted"
go vet ./... || fail=1
"$STATICCHECK" ./... || say "staticcheck reports the findings above"
go mod tidy -diff >/dev/null 2>&1 || { go mod tidy -diff || true; say "go.mod/go.sum are not tidy: run go mod tidy"; }

module=$(go list -m)
deps_of() { go list -deps "$@" 2>/dev/null; }
reaching=$(go list -f '{{.ImportPath}} {{join .Deps " "}}' ./producer/... ./consumers/... ./schemas/... |
	awk '$1 !~ /test$/ && / github.com\/segmentio\/kafka-go( |$)/ {print $1}')
supportUsers=$(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./... | awk '$1 !~ /test$/ && / [^ ]*\/consumers\/consumerstest( |$)/ {print $1}')
[[ -z $supportUsers ]] || say "only _test.go files may import consumers/consumerstest: $supportUsers"
[[ -z $reaching ]] || say "these packages depend on kafka-go, which belongs under pkg/ only: $reaching"
if deps_of ./producer/... | grep -qE "^$module/consumers(/|$)"; then say "producer imports consumers"; fi
if deps_of ./consumers/... | grep -qE "^$module/producer(/|$)"; then say "consumers imports producer"; fi
if deps_of ./schemas/... ./pkg/... | grep -qE "^$module/(producer|consumers|cmd)(/|$)"; then say "schemas/ or pkg/ imports producer, consumers or cmd"; fi
exit $fail
