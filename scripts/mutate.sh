#!/usr/bin/env bash
# `make mutate`: mutation testing of the packages that hold the guarantees
# (no loss, no duplicate, order, identity, signatures, retry classification,
# alert state). Gremlins changes one operator at a time in a package's code
# and runs that package's tests; a mutant that survives is a behaviour no
# test pins. Not part of `make test`: each mutant is a full `go test` run.
#
#   scripts/mutate.sh                       every package below
#   scripts/mutate.sh consumers/alerting    only the ones named
#
# Prints, per package, the surviving (LIVED) mutants and then a table of
# killed / lived / timed out / not covered and the score. Score is
# killed / (killed + lived): the share of covered mutants some test catches
# (gremlins' "test efficacy"); a timed-out mutant counts as neither.
# Integration tests run too (a mutant in the Kafka path must be caught against
# the real broker), so the services are started as in `make test`.
#
# It takes hours: a package's tests run once per mutant (consumers/alerting,
# about 300 mutants: 25 minutes with 2 workers). MUTATE_ALL_TESTS=1 keeps
# each package's slowest tests in (see SLOW below).
# MUTATE_ARGS='-E file-regexp' leaves files out to look at some first.
# MUTATE_WORKERS=2 runs two mutants at once (the tests wait on timers and
# fsync, so one worker leaves the machine half idle).
set -euo pipefail
cd "$(dirname "$0")/.."

GREMLINS_VERSION=v0.6.0
PACKAGES=(consumers/alerting pkg/unpod producer consumers consumers/webhooks consumers/storage consumers/lake)
if (($# > 0)); then PACKAGES=("$@"); fi

bin=${XDG_CACHE_HOME:-$HOME/.cache}/callstream/bin
GREMLINS=${GREMLINS:-$bin/gremlins}
# A `go install`ed gremlins says "dev" to --version; its build info has the module version.
if [[ ! -x $GREMLINS ]] || ! go version -m "$GREMLINS" 2>/dev/null | grep -q "go-gremlins/gremlins[[:space:]]*$GREMLINS_VERSION"; then
	echo "installing gremlins $GREMLINS_VERSION into $bin (once)"
	GOBIN=$bin go install "github.com/go-gremlins/gremlins/cmd/gremlins@$GREMLINS_VERSION" \
		|| { echo "FAIL: could not install gremlins from the Go module proxy" >&2; exit 1; }
	GREMLINS=$bin/gremlins
fi
if ! command -v jq >/dev/null; then
	command -v apt-get >/dev/null || { echo "FAIL: jq is needed to summarise the results (Debian: apt-get install jq)" >&2; exit 1; }
	echo "installing jq (once)"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq; } \
		|| { echo "FAIL: could not install jq with apt-get (needed to summarise the results)" >&2; exit 1; }
fi

# Gremlins copies the module for every worker, and a broker writing its log
# under the repository (.kafka, kafka.sh's default) makes that copy fail
# midway ("panic: error, this is temporary"): the broker started here keeps
# its data outside the repository.
export KAFKA_DATA_DIR=${KAFKA_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/callstream/kafka-data}
if [[ -z ${KAFKA_BROKERS:-} ]] && KAFKA_DATA_DIR=$PWD/.kafka deploy/kafka/kafka.sh status >/dev/null 2>&1; then
	echo "FAIL: a Kafka broker keeps its data in .kafka inside the repository, which gremlins copies for every mutant;" \
		"stop it (deploy/kafka/kafka.sh down) and run make mutate again (it starts one with its data outside)" >&2
	exit 1
fi
source scripts/services.sh
start_services
# The tools some tests drive (DuckDB reads the lake back): without them a
# package's tests fail whatever the mutant, and gremlins gives up on it
# ("failed to gather coverage").
source scripts/tools.sh
ensure_tools
export CALLSTREAM_INTEGRATION=1

# Each mutant's test run may take this many times as long as the unmutated
# run before it counts as timed out (a mutant that loops forever).
COEFFICIENT=${MUTATE_TIMEOUT_COEFFICIENT:-4}
# Gremlins runs `go`, from PATH; a shim first on PATH adjusts two of its
# calls.
# - Its coverage run (the `go test` with -coverprofile) covers ./... under
#   the package's directory. For "consumers" that is every plug-in's suite
#   too (minutes), which covers nothing of the runtime and would set every
#   mutant's timeout at four times that: with MUTATE_NO_SUBPACKAGES set, the
#   shim drops the trailing /... so the package's own tests alone run.
# - On a shared machine, heavy jobs queue on one lock file: MUTATE_LOCK
#   names it, and each mutant's `go test` takes it, so that other jobs run
#   between two mutants rather than after a whole package (hours). The
#   coverage run, whose time sets the mutants' timeout, does not wait for
#   it; the wait for the lock counts against a mutant's timeout, hence the
#   larger coefficient. Unset, the script runs unlocked.
LOCK=${MUTATE_LOCK:-}
[[ -z $LOCK ]] || COEFFICIENT=${MUTATE_TIMEOUT_COEFFICIENT:-12}
shim=$(mktemp -d)
trap 'rm -rf "$shim"; stop_services' EXIT
real_go=$(command -v go)
cat >"$shim/go" <<-SHIM
	#!/usr/bin/env bash
	if [[ \${1:-} == test && " \$* " == *" -coverprofile "* ]]; then
		if [[ -n \${MUTATE_NO_SUBPACKAGES:-} ]]; then last=\${@: -1}; set -- "\${@:1:\$#-1}" "\${last%/...}"; fi
		exec "$real_go" "\$@"
	fi
	if [[ \${1:-} == test && -n "$LOCK" ]]; then exec flock "$LOCK" "$real_go" "\$@"; fi
	exec "$real_go" "\$@"
SHIM
chmod +x "$shim/go"
export PATH=$shim:$PATH
# The unmutated run that sets the timeout must really run: a cached result
# takes milliseconds, and every mutant would time out.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-count=1"
# MUTATE_ARGS adds gremlins flags, e.g. -E 'sanitize' to leave files out.
read -ra extra <<<"${MUTATE_ARGS:-}"
out=${MUTATE_OUT:-.callstream/mutate}
mkdir -p "$out"

# The slowest tests of a package (process crashes, outages, latency runs:
# a minute or more each, mostly waiting) would make every surviving mutant
# cost that long; they are left out unless MUTATE_ALL_TESTS=1. A mutant
# only they would kill then counts as lived: the score is a lower bound.
declare -A SLOW=(
	[producer]='TestChaosKillRestart|TestGroupOwnership|TestPeriodicAudit|TestTooLargeRecords|TestDiscoveryFollowsOrgs|TestEmbeddedRestartKeepsDedup'
	[consumers]='TestKafkaCrashNoLoss'
	[consumers/lake]='TestSIGKILLExactlyOnce'
	[consumers/webhooks]='TestIsolationFromBadEndpoints'
	[consumers/storage]='TestOutageNothingDeadLettered|TestOutageIsTransient'
)
goflags=$GOFLAGS

for pkg in "${PACKAGES[@]}"; do
	[[ -d $pkg ]] || { echo "FAIL: no package directory $pkg" >&2; exit 1; }
	export GOFLAGS=$goflags
	if [[ -n ${SLOW[$pkg]:-} && ${MUTATE_ALL_TESTS:-} != 1 ]]; then
		GOFLAGS+=" -skip=${SLOW[$pkg]}"
		echo "$pkg: leaving out the slowest tests, ${SLOW[$pkg]}"
	fi
	args=(unleash --workers "${MUTATE_WORKERS:-1}" --timeout-coefficient "$COEFFICIENT" -S lt -o "$out/${pkg//\//_}.json")
	# "consumers" means the runtime and middlewares: the plug-ins beneath it
	# are packages of their own, run on their own (see the shim above).
	unset MUTATE_NO_SUBPACKAGES
	if [[ $pkg == consumers ]]; then args+=(-E '/'); export MUTATE_NO_SUBPACKAGES=1; fi
	echo "== $pkg"
	cmd=("$GREMLINS" "${args[@]}")
	cmd+=("${extra[@]}")
	(cd "$pkg" && "${cmd[@]}") || echo "gremlins exited $? on $pkg"
done

echo
printf '%-22s %7s %6s %9s %12s %7s\n' package killed lived timed-out not-covered score
for pkg in "${PACKAGES[@]}"; do
	f=$out/${pkg//\//_}.json
	[[ -s $f ]] || { printf '%-22s (no result)\n' "$pkg"; continue; }
	jq -r --arg p "$pkg" '
		[.files[].mutations[].status] as $s
		| ($s | map(select(. == "KILLED")) | length) as $k
		| ($s | map(select(. == "LIVED")) | length) as $l
		| ($s | map(select(. == "TIMED OUT")) | length) as $t
		| ($s | map(select(. == "NOT COVERED")) | length) as $n
		| [$p, $k, $l, $t, $n, (if $k + $l > 0 then "\(($k * 1000 / ($k + $l) + 0.5 | floor) / 10)%" else "-" end)]
		| @tsv' "$f" | awk -F'\t' '{printf "%-22s %7s %6s %9s %12s %7s\n", $1, $2, $3, $4, $5, $6}'
done
