# Sourced by test.sh: installs the small tools some tests drive, from the
# package registries, once (cached afterwards):
#   kustomize  renders deploy/k8s (Go module proxy, into ~/.cache/callstream/bin)
#   duckdb     reads the Parquet lake back (DuckDB's Python package, from PyPI)
#   chromium   headless browser for the status page tests (Debian's package, apt-get)

ensure_tools() {
	local bin=${XDG_CACHE_HOME:-$HOME/.cache}/callstream/bin
	if [[ -z ${KUSTOMIZE:-} ]] && ! command -v kustomize >/dev/null && [[ ! -x $bin/kustomize ]]; then
		echo "installing kustomize into $bin (once)"
		GOBIN=$bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0 \
			|| { echo "FAIL: could not install kustomize (needed to render deploy/k8s)" >&2; exit 1; }
	fi
	local py=${CALLSTREAM_DUCKDB_PYTHON:-python3}
	if ! "$py" -c 'import duckdb' 2>/dev/null; then
		command -v "$py" >/dev/null || { echo "FAIL: $py is needed for the DuckDB test of the lake" >&2; exit 1; }
		echo "installing DuckDB's Python package (once)"
		# A Debian system Python refuses plain pip installs (PEP 668).
		"$py" -m pip install --quiet duckdb 2>/dev/null || "$py" -m pip install --quiet --break-system-packages duckdb \
			|| { echo "FAIL: could not install duckdb with $py -m pip (needed to query the lake in tests)" >&2; exit 1; }
	fi
	# The status page is tested in a real browser (pkg/statuspage/browsertest).
	if [[ -z ${CHROMIUM:-} ]] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
		command -v apt-get >/dev/null || { echo "FAIL: chromium is needed for the status page tests; install it (Debian/Ubuntu: apt-get install chromium) or set CHROMIUM" >&2; exit 1; }
		echo "installing chromium (once)"
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
			|| { echo "FAIL: could not install chromium with apt-get (needed to test the status page)" >&2; exit 1; }
	fi
}

# ensure_lint_tools installs staticcheck (Go module proxy, once) and sets
# STATICCHECK to it.
ensure_lint_tools() {
	local bin=${XDG_CACHE_HOME:-$HOME/.cache}/callstream/bin
	STATICCHECK=${STATICCHECK:-$(command -v staticcheck || echo "$bin/staticcheck")}
	if [[ ! -x $STATICCHECK ]]; then
		echo "installing staticcheck into $bin (once)"
		GOBIN=$bin go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 \
			|| { echo "FAIL: could not install staticcheck" >&2; exit 1; }
		STATICCHECK=$bin/staticcheck
	fi
}
