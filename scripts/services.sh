# Sourced by test.sh and bench.sh: starts the local Kafka broker and the
# throwaway PostgreSQL cluster unless the caller points at its own
# (KAFKA_BROKERS, CALLSTREAM_TEST_POSTGRES_DSN), and stops at exit only what it
# started itself.

started_kafka=0
started_pg=0

# stop_services stops what start_services started; it runs at exit, and a
# caller may run it earlier once the services are no longer needed.
stop_services() {
	local rc=$?
	if [[ $started_kafka == 1 ]]; then deploy/kafka/kafka.sh down || true; fi
	if [[ $started_pg == 1 ]]; then deploy/postgres/postgres.sh down || true; fi
	started_kafka=0 started_pg=0
	return $rc
}

# cpu_idle prints the share of CPU time (percent) the machine spent idle
# over the next second, from /proc/stat.
cpu_idle() {
	local a b
	read -ra a < <(grep '^cpu ' /proc/stat)
	sleep 1
	read -ra b < <(grep '^cpu ' /proc/stat)
	local total=0 i
	for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
	echo $(( total > 0 ? 100 * (b[4] - a[4] + b[5] - a[5]) / total : 100 ))
}

# dirty_kib is how much written data the kernel still holds unwritten.
dirty_kib() { awk '/^Dirty:/ {print $2}' /proc/meminfo; }

# settle writes back what earlier tests left unwritten, then waits, up to
# $1 seconds, until the machine is at least 90% idle, and says how idle it
# was and which processes were busiest if it is not. The write-back comes
# first because a latency test that fsyncs queues behind it: 3 GB left
# dirty moved the webhook isolation test's p99 ratio from 1.3 to 2.2 here.
settle() {
	local dirty
	dirty=$(dirty_kib)
	sync
	echo "wrote back ${dirty} KiB left unwritten before the latency test"
	local idle deadline=$((SECONDS + $1))
	while idle=$(cpu_idle); ((idle < 90 && SECONDS < deadline)); do :; done
	echo "machine ${idle}% idle before the latency test"
	if ((idle < 90)); then ps -eo pcpu,pid,etime,args --sort=-pcpu | head -6 | cut -c1-160 || true; fi
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
		if ! deploy/postgres/postgres.sh status >/dev/null 2>&1; then started_pg=1; fi
		if ! CALLSTREAM_TEST_POSTGRES_DSN=$(deploy/postgres/postgres.sh up); then
			echo "FAIL: PostgreSQL could not start (see above); the PostgreSQL integration tests cannot run." >&2
			exit 1
		fi
	fi
	export CALLSTREAM_TEST_POSTGRES_DSN
	echo "PostgreSQL: ${CALLSTREAM_TEST_POSTGRES_DSN%%\?*}"
}
