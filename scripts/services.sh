# Sourced by test.sh and bench.sh: starts the local Kafka broker and the
# throwaway PostgreSQL cluster unless the caller points at its own
# (KAFKA_BROKERS, CALLSTREAM_TEST_POSTGRES_DSN), and stops at exit only what it
# started itself.

started_kafka=0
started_pg=0

stop_services() {
	local rc=$?
	if [[ $started_kafka == 1 ]]; then deploy/kafka/kafka.sh down || true; fi
	if [[ $started_pg == 1 ]]; then deploy/postgres/postgres.sh down || true; fi
	return $rc
}

start_services() {
	trap stop_services EXIT
	if [[ -z ${KAFKA_BROKERS:-} ]]; then
		if ! deploy/kafka/kafka.sh status >/dev/null 2>&1; then started_kafka=1; fi
		if ! KAFKA_BROKERS=$(deploy/kafka/kafka.sh up); then
			echo "FAIL: the local Kafka broker could not start (see above); the Kafka integration tests cannot run." >&2
			exit 1
		fi
	fi
	export KAFKA_BROKERS
	echo "Kafka: $KAFKA_BROKERS"
	if [[ -z ${CALLSTREAM_TEST_POSTGRES_DSN:-} ]]; then
		started_pg=1
		if ! CALLSTREAM_TEST_POSTGRES_DSN=$(deploy/postgres/postgres.sh up); then
			echo "FAIL: PostgreSQL could not start (see above); the PostgreSQL integration tests cannot run." >&2
			exit 1
		fi
	fi
	export CALLSTREAM_TEST_POSTGRES_DSN
	echo "PostgreSQL: ${CALLSTREAM_TEST_POSTGRES_DSN%%\?*}"
}
