#!/bin/bash
# generate_batch.sh: sft_generate_batch against sft_generate called once per
# prompt, side by side in one run, on the SmolLM2-135M shape (random
# weights, fp32, 2 BLAS threads): 16 conversations x 128 new tokens, greedy,
# rounds alternating the two ways; the replies are checked identical (so both
# generate the same tokens) and the ratio of the median times is the ratio of
# tokens/s.  Also the time to first token of a 512-token prompt (warm
# cache, median of 5), the prefill being one chunked BLAS forward.
#   SFT_BENCH_THREADS (default 2), SFT_BENCH_BATCH_ROUNDS (default 3)
set -eu
cd "$(dirname "$0")/../.."
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=sft_bench_generate_batch
THREADS=${SFT_BENCH_THREADS:-2}
ROUNDS=${SFT_BENCH_BATCH_ROUNDS:-3}
PSQL="$PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -d $DB"

"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
trap '"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1' EXIT
$PSQL -v tj="$(cat test/fixtures/tiny_bpe.json)" -v tc="$(cat test/fixtures/tiny_config_chatml.json)" >/dev/null <<'SQL'
CREATE EXTENSION sft;
SELECT sft_tokenizer_load('bench_chat', :'tj', :'tc');
SELECT sft_model_create('bench_135m', 'bench_chat', '{"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true}', 1);
CREATE TABLE bench_prompts AS
  SELECT i AS id, jsonb_build_array(jsonb_build_object('role', 'user', 'content',
         format('Question %s: what is %s plus %s, and why?', i, i * 7, i * 13))) AS messages
    FROM generate_series(1, 16) i;
CREATE TABLE bench_alone (round int, id int, reply text);
CREATE TABLE bench_batch (round int, id int, reply text);
CREATE FUNCTION bench_median(float8[]) RETURNS float8 LANGUAGE sql AS $$
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest($1) x $$;
SQL

sql=$($PSQL <<SQL
SET sft.threads = $THREADS;
SELECT sft_generate('bench_135m', messages, 4) FROM bench_prompts WHERE id = 1;  -- load the model
CREATE TEMP TABLE times (round int, way text, seconds float8);
DO \$\$
DECLARE t0 timestamptz;
BEGIN
  FOR r IN 1..$ROUNDS LOOP
    t0 := clock_timestamp();
    INSERT INTO bench_alone SELECT r, id, sft_generate('bench_135m', messages, 128) FROM bench_prompts ORDER BY id;
    INSERT INTO times VALUES (r, 'alone', extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp();
    INSERT INTO bench_batch SELECT r, ordinality, reply
      FROM sft_generate_batch('bench_135m', ARRAY(SELECT messages FROM bench_prompts ORDER BY id), 128);
    INSERT INTO times VALUES (r, 'batch', extract(epoch FROM clock_timestamp() - t0));
  END LOOP;
END \$\$;
SELECT count(*) FROM bench_alone a JOIN bench_batch b USING (round, id) WHERE a.reply = b.reply \gset same_
SELECT count(*) FROM bench_alone \gset all_
SELECT sum(array_length(sft_tokenize('bench_chat', reply), 1)) / $ROUNDS AS sum FROM bench_alone \gset tokens_
SELECT bench_median(array_agg(seconds) FILTER (WHERE way = 'alone')) AS alone,
       bench_median(array_agg(seconds) FILTER (WHERE way = 'batch')) AS batch FROM times \gset
-- time to first token, 512-token prompt
SELECT sft_detokenize('bench_chat', (sft_tokenize('bench_chat', repeat('The sea is wide and the waves are high. ', 80)))[1:512]) AS long_prompt \gset
SELECT array_length(sft_tokenize('bench_chat', :'long_prompt'), 1) AS long_tokens \gset
SELECT set_config('bench.long_prompt', :'long_prompt', false) IS NOT NULL AS set \gset
CREATE TEMP TABLE ttft (s float8);
DO \$\$
DECLARE t0 timestamptz;
BEGIN
  FOR r IN 1..5 LOOP
    t0 := clock_timestamp();
    PERFORM sft_generate_raw('bench_135m', current_setting('bench.long_prompt'), 1);
    INSERT INTO ttft VALUES (extract(epoch FROM clock_timestamp() - t0));
  END LOOP;
END \$\$;
SELECT bench_median(array_agg(s)) AS ttft FROM ttft \gset
\echo RESULT :same_count :all_count :tokens_sum :alone :batch :long_tokens :ttft
SQL
)
echo "$sql" | grep -v '^RESULT' | grep -v '^$' | sed 's/^/  # /' || true
read -r _ same all tokens alone batch long_tokens ttft <<<"$(echo "$sql" | grep '^RESULT')"
if [ "$same" != "$all" ]; then
	echo "  bench generate_batch: only $same of $all batched replies equal the single-call replies"
	exit 1
fi
awk -v t="$tokens" -v a="$alone" -v b="$batch" -v n="$ROUNDS" -v lt="$long_tokens" -v f="$ttft" 'BEGIN {
	printf "  16 conversations x up to 128 new tokens, %d rounds alternating; the replies are identical both ways,\n", n
	printf "  so the ratio of the times is the ratio of tokens/s (replies re-tokenized: %d tokens a round)\n", t
	printf "    16 sft_generate calls: median %.2f s\n", a
	printf "    one sft_generate_batch: median %.2f s -> %.2fx the tokens/s\n", b, a / b
	printf "  time to first token, %d-token prompt, warm cache: median of 5 %.3f s\n", lt, f
}'
