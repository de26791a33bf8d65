# callstream: the two commands a new user needs are `make run` and `make test`.
# Prerequisites: Go 1.26+, Java 17+ and Maven (the local Kafka), PostgreSQL
# server binaries (Debian: apt-get install postgresql) for the tests.

GO ?= go
BIN := bin/callstream

.PHONY: run build test bench lint mutate kafka-up kafka-down pg-up pg-down fuzz clean

## run: the embedded pipeline (producer + consumers in one process); the
## simulator is polled when UNPOD_API_TOKEN is not set.
run:
	$(GO) run ./cmd/callstream run

build:
	$(GO) build -o $(BIN) ./cmd/callstream

## test: gofmt, vet, unit and integration tests against a real Kafka and PostgreSQL.
test:
	scripts/test.sh

## bench: throughput and latency figures (not pass/fail).
bench:
	scripts/bench.sh

## fuzz: the API page decoder, the JSON scanner and the call event decoder,
## longer than the seed corpus make test runs.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodePage -fuzztime 60s ./pkg/unpod
	$(GO) test -run '^$$' -fuzz FuzzDecodeDifferential -fuzztime 60s ./pkg/unpod
	$(GO) test -run '^$$' -fuzz FuzzScanAgreesWithValid -fuzztime 60s ./pkg/jsonscan
	$(GO) test -run '^$$' -fuzz FuzzDecodeCallDifferential -fuzztime 60s ./schemas

## mutate: mutation testing (gremlins) of the packages that hold the
## guarantees; prints each package's surviving mutants and score. Slow (a
## test run per mutant), not part of test. PKGS=consumers/alerting picks some.
mutate:
	scripts/mutate.sh $(PKGS)

## lint: gofmt, vet, staticcheck, go mod tidy, and the layout's dependency rules.
lint:
	scripts/lint.sh

kafka-up:
	deploy/kafka/kafka.sh up

kafka-down:
	deploy/kafka/kafka.sh down

pg-up:
	deploy/postgres/postgres.sh up

pg-down:
	deploy/postgres/postgres.sh down

clean:
	rm -rf bin .callstream bench-results.txt
