#!/bin/bash
# make test: every suite against the installed build, on a throwaway cluster.
#   1. C unit tests of the core (test/unit/test_*), TAP output
#   2. pg_regress over sql/*.sql against expected/*.out
#   3. extra suites: every executable test/suites/*.sh (parity with reference
#      implementations, TAP-style server tests ...); each ends its output with
#      a line "N passed, N failed".
# Ends with one line "N passed, N failed" summing all of them; exits non-zero
# on any failure.
set -u
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-pg_config}
source test/cluster.sh

passed=0
failed=0
failures=()

count_tap() {				# suite name, output file
	local ok bad
	ok=$(grep -cE '^ok ' "$2")
	bad=$(grep -cE '^not ok ' "$2")
	passed=$((passed + ok))
	failed=$((failed + bad))
	[ "$bad" -gt 0 ] && failures+=("$1")
	echo "  $1: $ok passed, $bad failed"
}

echo "== installing"
if ! make -s install >/tmp/sft-install.log 2>&1; then
	cat /tmp/sft-install.log
	echo "make install failed (run as root, or as a user who may write to $($PG_CONFIG --pkglibdir))"
	echo "0 passed, 1 failed"
	exit 1
fi

echo "== unit tests (test/unit)"
for t in test/unit/test_*; do
	[ -x "$t" ] && [ "${t%.c}" = "$t" ] || continue
	out=$(mktemp)
	if ! "$t" >"$out" 2>&1; then
		grep -qE '^not ok ' "$out" || echo "not ok - $t exited with status $?" >>"$out"
	fi
	grep -E '^not ok |^#' "$out" | head -20
	count_tap "$(basename "$t")" "$out"
	rm -f "$out"
done

echo "== starting a throwaway cluster"
cluster_start || { echo "0 passed, 1 failed"; exit 1; }
echo "  PGHOST=$PGHOST PGPORT=$PGPORT"

echo "== pg_regress (sql/)"
tests=$(ls sql/*.sql | sed 's|sql/||; s|\.sql$||' | tr '\n' ' ')
regress_dir=$SFT_TMP/regress
mkdir -p "$regress_dir"
[ "$(id -u)" = 0 ] && chown postgres: "$regress_dir"
"$($PG_CONFIG --pgxs | xargs dirname)/../test/regress/pg_regress" \
	--inputdir=. --outputdir="$regress_dir" --bindir="$PGBIN" \
	--host="$PGHOST" --port="$PGPORT" --user=postgres \
	--dbname=sft_regression --load-extension=sft $tests >"$regress_dir/out.txt" 2>&1
cat "$regress_dir/out.txt" | grep -E '^(test|ok|not ok|     )' | sed 's/^/  /'
ok=$(grep -cE '^(ok|test) .* ok( |$)|\.\.\. ok' "$regress_dir/out.txt")
bad=$(grep -cE 'FAILED|failed \(ignored\)' "$regress_dir/out.txt")
passed=$((passed + ok)); failed=$((failed + bad))
if [ "$bad" -gt 0 ]; then
	failures+=("pg_regress")
	echo "---- regression.diffs"
	cat "$regress_dir/regression.diffs" 2>/dev/null
fi
echo "  pg_regress: $ok passed, $bad failed"

for s in test/suites/*.sh; do
	[ -x "$s" ] || continue
	echo "== suite $(basename "$s")"
	out=$(mktemp)
	bash "$s" 2>&1 | tee "$out" | sed 's/^/  /'
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
	if [ -z "$last" ]; then
		failed=$((failed + 1)); failures+=("$(basename "$s") (no summary line)")
	else
		ok=${last%% passed*}; bad=${last#*, }; bad=${bad%% failed}
		passed=$((passed + ok)); failed=$((failed + bad))
		[ "$bad" -gt 0 ] && failures+=("$(basename "$s")")
	fi
	rm -f "$out"
done

echo
[ ${#failures[@]} -gt 0 ] && echo "failing suites: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
