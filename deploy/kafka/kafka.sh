#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, combined broker+controller) on 127.0.0.1,
# without Docker: jars from Maven Central, cached; data in a directory this script owns.
#
#   deploy/kafka/kafka.sh up       start (or reuse) the broker, print its bootstrap address
#   deploy/kafka/kafka.sh down     stop the broker this script started (by its recorded PID)
#   deploy/kafka/kafka.sh status   say whether it runs
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1),
# KAFKA_DATA_DIR (<repo>/.kafka), KAFKA_CACHE_DIR (~/.cache/callstream/kafka-<version>),
# KAFKA_HEAP (1G), KAFKA_START_TIMEOUT (90 seconds).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
data=${KAFKA_DATA_DIR:-$repo/.kafka}
cache=${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/callstream/kafka-$version}
heap=${KAFKA_HEAP:-1G}
timeout=${KAFKA_START_TIMEOUT:-90}
pidfile=$data/kafka.pid
log=$data/server.log

say() { echo "kafka: $*" >&2; }
die() { say "$*"; exit 1; }

running() {
	[[ -f $pidfile ]] || return 1
	local pid
	pid=$(cat "$pidfile")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null
}

fetch() {
	[[ -f $cache/.complete ]] && return 0
	command -v mvn >/dev/null || die "Maven (mvn) is required to download Kafka $version from Maven Central; install it (apt-get install maven)"
	say "downloading Apache Kafka $version and its dependencies from Maven Central into $cache (once)"
	rm -rf "$cache.tmp"
	mkdir -p "$cache.tmp"
	if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$cache.tmp/lib" >"$cache.tmp/mvn.log" 2>&1; then
		tail -n 30 "$cache.tmp/mvn.log" >&2
		die "mvn could not resolve org.apache.kafka:kafka_2.13:$version (log above)"
	fi
	rm -rf "$cache"
	mv "$cache.tmp" "$cache"
	touch "$cache/.complete"
}

configure() {
	mkdir -p "$data/logs"
	cat >"$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data/logs
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.cleaner.enable=true
log.segment.bytes=104857600
message.max.bytes=10485760
PROPS
}

up() {
	command -v java >/dev/null || die "Java 17 or later is required to run Kafka; install a JDK (apt-get install openjdk-17-jre-headless)"
	if running; then
		say "already running (pid $(cat "$pidfile")), reusing it"
	else
		fetch
		configure
		if [[ ! -f $data/logs/meta.properties ]]; then
			java -cp "$cache/lib/*" -Dlog4j.configuration="file:$here/log4j.properties" \
				kafka.tools.StorageTool format --cluster-id="$(cluster_id)" -c "$data/server.properties" --ignore-formatted >"$data/format.log" 2>&1 \
				|| { cat "$data/format.log" >&2; die "formatting the storage in $data/logs failed"; }
		fi
		# setsid: the broker outlives the shell that started it, and is stopped by PID only.
		KAFKA_OPTS= setsid nohup java -Xms256m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
			-Dlog4j.configuration="file:$here/log4j.properties" \
			-cp "$cache/lib/*" kafka.Kafka "$data/server.properties" >"$log" 2>&1 </dev/null &
		echo $! >"$pidfile"
		say "started pid $(cat "$pidfile"), log $log"
	fi
	if ! (cd "$repo" && go run ./deploy/kafka/kafkaready -broker "127.0.0.1:$port" -timeout "${timeout}s"); then
		say "the broker did not come up within ${timeout}s; last lines of $log:"
		tail -n 40 "$log" >&2 || true
		running || say "the broker process has exited"
		exit 1
	fi
	echo "127.0.0.1:$port"
}

cluster_id() {
	# A fixed-length base64url id derived from the data directory, so a re-format is stable.
	# Substrings, not `| head`: head exiting early SIGPIPEs the writer under pipefail.
	local hex id
	hex=$(printf '%s' "$data" | sha256sum)
	hex=${hex:0:32}
	id=$(printf '%b' "$(sed 's/../\\x&/g' <<<"$hex")" | base64 | tr '+/' '-_' | tr -d '=\n')
	printf '%s' "${id:0:22}"
}

down() {
	if ! running; then
		say "not running"
		rm -f "$pidfile"
		return 0
	fi
	local pid
	pid=$(cat "$pidfile")
	kill -TERM "$pid"
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return 0; }
		sleep 0.5
	done
	say "pid $pid did not stop within 30s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pidfile"
}

case "${1:-}" in
up) up ;;
down) down ;;
status) if running; then echo "running (pid $(cat "$pidfile"))"; else echo "not running"; exit 1; fi ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
