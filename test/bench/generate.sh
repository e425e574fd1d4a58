#!/bin/bash
# generate.sh: decoding through sft_generate against the core decode
# benchmark (test/bench/bench_decode) on the same model: SmolLM2-135M shape
# (576 wide, 30 layers, 9/3 heads, FFN 1536, vocab 49152, tied), random
# weights, fp32, a 32-token prompt, 64 new tokens, greedy, 2 BLAS threads on
# both sides.
#
#   decode tokens/s  core: bench_decode's median of 3 (cached decode steps
#                          only), run before and after the SQL part, mean
#                    SQL:  64 / (T(65 new tokens) - T(1 new token)), medians of
#                          3 calls each, so prompt prefill and per-call work
#                          cancel and what is left is the per-token cost of
#                          the SQL path (decoder step, sampling, incremental
#                          detokenization, interrupt checks)
#   overhead         core rate / SQL rate - 1 (target: under 5%)
#   first token      sft_generate_raw(..., max_new_tokens => 1) with a cold
#                    cache (model read from its large object, decoder
#                    allocated) and warm (median of 5)
#
# The model's tokenizer has no chat template and no end-of-sequence token,
# so every call generates exactly the tokens asked for (checked).
set -eu
cd "$(dirname "$0")/../.."
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=sft_bench_generate
THREADS=${SFT_BENCH_THREADS:-2}
PSQL="$PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -d $DB"
DECODE=test/bench/bench_decode
[ -x "$DECODE" ] || make -s "$DECODE" >/dev/null

"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
trap '"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1' EXIT
$PSQL -v tj="$(cat test/fixtures/tiny_bpe.json)" >/dev/null <<'SQL'
CREATE EXTENSION sft;
SELECT sft_tokenizer_load('bench_plain', :'tj');
SELECT sft_model_create('bench_135m', 'bench_plain', '{"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true}', 1);
CREATE FUNCTION bench_seconds(query text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  EXECUTE query;
  RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
CREATE FUNCTION bench_median(float8[]) RETURNS float8 LANGUAGE sql AS $$
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest($1) x $$;
SQL

# a 32-token prompt of the tiny tokenizer
prompt=$($PSQL -c "SELECT sft_detokenize('bench_plain', (sft_tokenize('bench_plain', repeat('The sea is wide and the waves are high. ', 8)))[1:32])")

# the core benchmark runs before and after the SQL measurements; their mean
# is the reference, so a load change on the machine shows as their spread
core_run() {
	local out
	out=$("$DECODE" "$THREADS" 64 32)
	echo "$out" | grep -v '^RESULT' | sed 's/^/  /' >&2
	echo "$out" | sed -n 's/^RESULT tokens_per_s=\([0-9.]*\).*/\1/p'
}
core_before=$(core_run)

sql=$($PSQL <<SQL
SET sft.threads = $THREADS;
SELECT sft_model_cache_clear();
\set prompt '$prompt'
SELECT array_length(sft_tokenize('bench_plain', :'prompt'), 1) AS prompt_tokens \gset
SELECT bench_seconds(format('SELECT sft_generate_raw(%L, %L, 1)', 'bench_135m', :'prompt')) AS cold \gset
SELECT array_length(sft_generate_tokens('bench_135m', sft_tokenize('bench_plain', :'prompt'), 65), 1) AS generated \gset
SELECT bench_median(array_agg(bench_seconds(format('SELECT sft_generate_raw(%L, %L, 1)', 'bench_135m', :'prompt'))))
  AS warm FROM generate_series(1, 5) \gset
SELECT bench_median(array_agg(bench_seconds(format('SELECT sft_generate_raw(%L, %L, 65)', 'bench_135m', :'prompt'))))
  AS t65 FROM generate_series(1, 3) \gset
SELECT bench_median(array_agg(bench_seconds(format('SELECT sft_generate_raw(%L, %L, 1)', 'bench_135m', :'prompt'))))
  AS t1 FROM generate_series(1, 3) \gset
\echo RESULT :prompt_tokens :generated :cold :warm :t65 :t1
SQL
)
read -r _ prompt_tokens generated cold warm t65 t1 <<<"$(echo "$sql" | grep '^RESULT')"
core_after=$(core_run)
core_rate=$(awk -v a="$core_before" -v b="$core_after" 'BEGIN { printf "%.4f", (a + b) / 2 }')
if [ "$generated" != 65 ]; then
	echo "bench generate: expected 65 generated tokens, got $generated"
	exit 1
fi
awk -v core="$core_rate" -v c1="$core_before" -v c2="$core_after" -v t65="$t65" -v t1="$t1" -v cold="$cold" -v warm="$warm" \
	-v p="$prompt_tokens" -v threads="$THREADS" 'BEGIN {
	sql = 64 / (t65 - t1)
	printf "  model: SmolLM2-135M shape, fp32, random weights; prompt %d tokens; %d BLAS threads\n", p, threads
	printf "  %-44s %10s\n", "", "tokens/s"
	printf "  %-44s %10.2f   (before %.2f, after %.2f)\n", "core decode (bench_decode, medians of 3)", core, c1, c2
	printf "  %-44s %10.2f\n", "sft_generate_raw decode (64 / (T65 - T1))", sql
	printf "  %-44s %10.2f\n", "sft_generate_raw end to end (65 / T65)", 65 / t65
	printf "  SQL overhead per decoded token: %+.1f%% (core / SQL - 1; target < 5%%)\n", (core / sql - 1) * 100
	printf "  first token (prompt prefill + 1 token): cold cache %.3f s (model read from its large object), warm %.3f s (median of 5)\n", cold, warm
}'
