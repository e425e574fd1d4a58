#!/bin/bash
# generate_pgbench.sh: sft_generate under concurrency.
#
# pgbench runs 4 clients for ${SFT_PGBENCH_SECONDS:-20} s against a tiny
# model, mixing six scripts: greedy generation (checked against the text
# computed before the run), seeded sampling with top-p, streaming (rows
# concatenated, checked), greedy generation from q8_0 decode weights
# (sft.generate_dtype, checked), sft_generate_batch of three conversations
# (each reply checked), and sft_loss (checked).  A wrong result divides by
# zero, so pgbench counts it as a failure.  Every client must finish with no
# error, and the private memory (RssAnon) of each client's backend must not
# grow between the first seconds (model cached, decoder allocated) and the
# end: a leak of core buffers or a lost cache entry would show there.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=sft_generate_pgbench
SECONDS_RUN=${SFT_PGBENCH_SECONDS:-20}
PSQL="$PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -d $DB"
passed=0
failed=0

check() {					# name, expected, got
	if [ "$2" = "$3" ]; then
		echo "ok - $1"
		passed=$((passed + 1))
	else
		echo "not ok - $1"
		echo "#   expected: $2"
		echo "#   got:      $3"
		failed=$((failed + 1))
	fi
}
q() { $PSQL -c "$1" 2>&1; }

if [ ! -x "$PGBIN/pgbench" ]; then
	echo "# skipped: no pgbench in $PGBIN"
	echo "0 passed, 0 failed"
	exit 0
fi
work=$(mktemp -d /tmp/sft-generate-pgbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
q "CREATE EXTENSION sft" >/dev/null
$PSQL -v tj="$(cat test/fixtures/tiny_bpe.json)" -v tc="$(cat test/fixtures/tiny_config_chatml.json)" >/dev/null <<'SQL'
SELECT sft_tokenizer_load('pgb_tok', :'tj', :'tc');
SELECT sft_model_create('pgb_m', 'pgb_tok', '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 386, "max_position_embeddings": 256, "tie_word_embeddings": false}', 5);
SQL

hi='[{"role": "user", "content": "Hello!"}]'
pair="sft_from_pair('What is the capital of France?', 'Paris is the capital.')"
greedy_md5=$(q "SELECT md5(sft_generate('pgb_m', '$hi'::jsonb, 32))")
loss=$(q "SELECT sft_loss('pgb_m', $pair)")
q8_md5=$(q "SET sft.generate_dtype = q8_0; SELECT md5(sft_generate('pgb_m', '$hi'::jsonb, 32))" | tail -1)
check "expected values computed" "t" "$(q "SELECT length('$greedy_md5') = 32 AND length('$q8_md5') = 32 AND $loss > 0")"

cat >"$work/greedy.sql" <<SQL
SELECT 1 / (md5(sft_generate('pgb_m', '$hi'::jsonb, 32)) = '$greedy_md5')::int;
SQL
cat >"$work/sampled.sql" <<SQL
\set s random(1, 1000000000)
SELECT 1 / (length(sft_generate('pgb_m', '$hi'::jsonb, 32, temperature => 0.9, top_p => 0.9, seed => :s)) >= 0)::int;
SQL
cat >"$work/stream.sql" <<SQL
SELECT 1 / (md5(string_agg(p, '')) = '$greedy_md5')::int FROM (SELECT sft_generate_stream('pgb_m', '$hi'::jsonb, 32) AS p) s;
SQL
cat >"$work/q8.sql" <<SQL
SET sft.generate_dtype = q8_0;
SELECT 1 / (md5(sft_generate('pgb_m', '$hi'::jsonb, 32)) = '$q8_md5')::int;
RESET sft.generate_dtype;
SQL
cat >"$work/batch.sql" <<SQL
SELECT 1 / (count(*) FILTER (WHERE md5(reply) = '$greedy_md5') = 3)::int
  FROM sft_generate_batch('pgb_m', ARRAY['$hi'::jsonb, '$hi'::jsonb, '$hi'::jsonb], 32);
SQL
cat >"$work/loss.sql" <<SQL
SELECT 1 / (sft_loss('pgb_m', $pair) = $loss)::int;
SQL

rss_of_clients() {			# "pid:RssAnon kB" for each pgbench backend, sorted by pid
	local pids
	pids=$(q "SELECT pid FROM pg_stat_activity WHERE datname = '$DB' AND application_name = 'pgbench' ORDER BY pid")
	for pid in $pids; do
		echo "$pid:$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status 2>/dev/null)"
	done
}

"$PGBIN/pgbench" -n -c 4 -j 2 -T "$SECONDS_RUN" -d "$DB" \
	-f "$work/greedy.sql@4" -f "$work/sampled.sql@3" -f "$work/stream.sql@2" -f "$work/q8.sql@2" -f "$work/batch.sql@2" -f "$work/loss.sql@1" \
	>"$work/pgbench.out" 2>&1 &
bench_pid=$!
# Sample every second while pgbench runs, keeping the first full sample taken
# at least 8 s in (model cached, decoder allocated) and the last full one
# before pgbench ends: fixed sleeps miss the end on a slow or loaded host.
rss_start=""
rss_end=""
start_at=0
end_at=0
began=$(date +%s)
while kill -0 $bench_pid 2>/dev/null; do
	sample=$(rss_of_clients)
	now=$(( $(date +%s) - began ))
	if [ "$(echo "$sample" | grep -c ':[0-9]')" = 4 ]; then
		if [ -z "$rss_start" ]; then
			[ "$now" -ge 8 ] && { rss_start=$sample; start_at=$now; }
		else
			rss_end=$sample
			end_at=$now
		fi
	fi
	sleep 1
done
wait $bench_pid
status=$?

sed 's/^/# /' "$work/pgbench.out" | grep -E 'transactions|tps|latency|failed|abort|ERROR|error' | head -20
check "pgbench exits cleanly" "0" "$status"
check "no client aborted, no error" "0" "$(grep -ciE 'abort|error' "$work/pgbench.out")"
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.out")
check "transactions were processed" "t" "$([ "${processed:-0}" -gt 100 ] && echo t || echo f)"
check "4 backends sampled at start and end" "4 4" "$(echo "$rss_start" | grep -c ':[0-9]') $(echo "$rss_end" | grep -c ':[0-9]')"
check "samples at least $((SECONDS_RUN / 4)) s apart" "t" "$([ $((end_at - start_at)) -ge $((SECONDS_RUN / 4)) ] && echo t || echo f)"
echo "# RssAnon kB at $start_at s: $(echo $rss_start)"
echo "# RssAnon kB at $end_at s: $(echo $rss_end)"
# The baseline is the largest backend at 8 s: every client runs the same
# scripts, so they converge on one steady state; a client that had not yet
# run the costliest script by then is not a leak, growth beyond that level is.
steady=0
for start in $rss_start; do
	[ "${start#*:}" -gt "$steady" ] && steady=${start#*:}
done
growth_ok=t
for start in $rss_start; do
	pid=${start%%:*}
	before=$steady
	after=$(echo "$rss_end" | tr ' ' '\n' | sed -n "s/^$pid://p")
	if [ -z "$before" ] || [ -z "$after" ] || [ $((after - before)) -gt 1024 ]; then
		growth_ok=f
		echo "# backend $pid: RssAnon $before kB -> $after kB"
	fi
done
check "no backend's private memory grew by more than 1 MB" "t" "$growth_ok"

"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
