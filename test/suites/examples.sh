#!/bin/bash
# The seed recipe (examples/seed_recipe/) end to end on small synthetic JSONL
# files shaped like each dataset (test/fixtures/jsonl/) and a tiny model made
# here instead of SmolLM2-135M: load, mix, import, train, evaluate, export.
# Runs against the throwaway cluster of make test (PGHOST... exported, SFT_TMP
# a scratch directory the server can write).
set -u
cd "$(dirname "$0")/../.."
passed=0
failed=0
check() {					# description, command...
	local what=$1; shift
	if "$@"; then
		passed=$((passed + 1)); echo "ok - $what"
	else
		failed=$((failed + 1)); echo "not ok - $what"
	fi
}
db=sft_examples
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" || { echo "0 passed, 1 failed"; exit 1; }
export PGDATABASE=$db
q() { psql -X -A -t -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
eq() {						# description, query, expected output
	local got
	got=$(q "$2")
	[ "$got" = "$3" ] || echo "#   $1: got [$got], expected [$3]"
	check "$1" [ "$got" = "$3" ]
}

# A tiny model in HF layout, standing in for SmolLM2-135M: the synthetic
# chatml tokenizer of the tokenizer tests, a 2-layer Llama, exported.
model_dir=$SFT_TMP/tiny-model
export_dir=$SFT_TMP/tiny-seed-export
psql -X -q -v ON_ERROR_STOP=1 \
	-v tok="$(cat test/fixtures/tiny_bpe.json)" -v cfg="$(cat test/fixtures/tiny_config_chatml.json)" \
	-v dir="$model_dir" <<'SQL' >"$SFT_TMP/examples-setup.log" 2>&1
CREATE EXTENSION sft;
SELECT * FROM sft_tokenizer_load('tiny-tok', :'tok', :'cfg');
SELECT sft_model_create('tiny', 'tiny-tok', '{"hidden_size": 32, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
  "vocab_size": 386, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
  "rope_theta": 10000, "tie_word_embeddings": true}', 7);
SELECT sft_model_export('tiny', :'dir');
SELECT sft_model_drop('tiny');
SQL
check "tiny stand-in model exported" test -f "$model_dir/model.safetensors"
[ -f "$model_dir/model.safetensors" ] || cat "$SFT_TMP/examples-setup.log"

# The recipe as a user runs it, with a small budget.
log=$SFT_TMP/seed-recipe.log
psql -X -v data_dir="$PWD/test/fixtures/jsonl" -v model_dir="$model_dir" -v export_dir="$export_dir" \
	-v base=tiny-base -v output=tiny-seed -v per_source=12 -v epochs=2 -v learning_rate=3e-3 \
	-v batch_size=4 -v grad_accum=1 -f examples/seed_recipe/seed_recipe.sql >"$log" 2>&1
rc=$?
check "seed_recipe.sql runs to the end (psql status $rc)" [ $rc = 0 ]
[ $rc = 0 ] || tail -30 "$log"

# Loading: every line of every file, JSON escapes intact.
eq "rows loaded per source" \
	"SELECT string_agg(source || '=' || n, ' ' ORDER BY source) FROM (SELECT source, count(*) n FROM seed_docs GROUP BY 1) s" \
	"everyday-conversations=40 hard-coded=30 magpie-ultra=60 oasst1=333 smol-constraints=30 smol-rewrite=30 smol-summarize=32 ultrachat=30"
read -r -d '' escapes_query <<'SQL'
SELECT count(*) FROM seed_docs
WHERE source = 'smol-rewrite'
  AND strpos(doc->'messages'->1->>'content', E'He said "fine" \\ caf\u00e9 \u2014 ok.\nNew line\ttab.') > 0
SQL
eq "backslash, quote, tab, newline and non-ASCII survive \\copy" "$escapes_query" "3"

# Shaping: what each source contributes before sampling (the fixture has, per
# source: everyday 40 valid rows of 1-4 turns, all short; smol-summarize 4 of
# 32 far over 512 tokens; magpie-ultra 16 of 60 in math/coding categories in
# both spellings and 2 empty conversations; ultrachat 30 turn lists, 2 ending
# with an unanswered question that survives the cut to two turns (one of
# them its only turn); hard-coded 30 rows, 3 with {{version}} and 5 with
# <|DATE_CUTOFF|> (one has both), left unfilled; oasst1 20 English, 14
# Spanish and 5 French trees, every prompt answered by a kept reply).
eq "candidates per source (held out included)" \
	"SELECT string_agg(source || '=' || n, ' ' ORDER BY source) FROM (SELECT source, count(*) n FROM seed_candidates GROUP BY 1) s" \
	"everyday-conversations=40 hard-coded=23 magpie-ultra=42 oasst1-en=20 oasst1-es=14 smol-constraints=30 smol-rewrite=30 smol-summarize=28 ultrachat=28"
eq "magpie-ultra candidates exclude math and coding/debugging" \
	"SELECT count(*) FROM seed_candidates c JOIN seed_docs d USING (source, line) WHERE lower(d.doc->>'category') ~ '^(math|coding)'" "0"
eq "magpie-ultra keeps rows without a category" \
	"SELECT count(*) > 0 FROM seed_candidates c JOIN seed_docs d USING (source, line) WHERE source = 'magpie-ultra' AND d.doc->>'category' IS NULL" "t"
eq "mix: per_source rows from every source" \
	"SELECT string_agg(source || '=' || n, ' ' ORDER BY source) FROM (SELECT source, count(*) n FROM seed_mix GROUP BY 1) s" \
	"everyday-conversations=12 hard-coded=12 magpie-ultra=12 oasst1-en=12 oasst1-es=12 smol-constraints=12 smol-rewrite=12 smol-summarize=12 ultrachat=12"
eq "mix: at most two turns, some with two" \
	"SELECT max(sft_turns(messages)) || ' ' || bool_or(sft_turns(messages) = 2) FROM seed_mix" "2 true"
eq "mix: no system messages left (folded into the user prompt)" \
	"SELECT count(*) FROM seed_mix WHERE messages @> '[{\"role\":\"system\"}]'" "0"
eq "mix: system prompts folded into the first user message" \
	"SELECT count(*) > 0 FROM seed_mix WHERE source = 'smol-rewrite' AND messages->0->>'content' LIKE 'You are an AI writing assistant.%'" "t"
eq "mix: every row under 512 tokens of the model's template" \
	"SELECT count(*) FROM seed_mix WHERE sft_token_count('tiny-base', messages) >= 512" "0"
eq "mix: held-out rows never in the mix" \
	"SELECT count(*) FROM seed_mix m JOIN seed_heldout h USING (source, messages)" "0"
eq "held-out set is not empty" "SELECT count(*) > 0 FROM seed_heldout" "t"
eq "mix: sampled, not the first lines of each file" \
	"SELECT count(*) < 60 FROM seed_mix m JOIN seed_candidates c USING (source, messages) WHERE c.line <= 12" "t"
first=$(q "SELECT md5(string_agg(messages::text, '|' ORDER BY messages::text)) FROM seed_mix")
second=$(q "SELECT md5(string_agg(messages::text, '|' ORDER BY messages::text)) FROM seed_mix")
check "mix: the same rows on every read (seeded, not random())" [ -n "$first" ] && [ "$first" = "$second" ]

# The new shapes, checked against the raw rows with plain SQL.
read -r -d '' oasst_trees <<'SQL'
SELECT string_agg(lang || '=' || n, ' ' ORDER BY lang) FROM (
  SELECT root.doc->>'lang' AS lang, count(*) AS n
  FROM seed_docs root
  WHERE root.source = 'oasst1' AND root.doc->>'parent_id' IS NULL
    AND EXISTS (SELECT 1 FROM seed_docs r WHERE r.source = 'oasst1' AND r.doc->>'parent_id' = root.doc->>'message_id'
                AND NOT (r.doc->>'deleted')::boolean AND (r.doc->>'review_result')::boolean)
  GROUP BY 1) s
SQL
eq "oasst1: trees with an answered prompt per language (raw rows)" "$oasst_trees" "en=20 es=14 fr=5"
read -r -d '' oasst_best <<'SQL'
SELECT count(*) FROM seed_candidates c
WHERE c.source LIKE 'oasst1-%'
  AND c.messages->1->>'content' IS DISTINCT FROM (
    SELECT r.doc->>'text' FROM seed_docs root JOIN seed_docs r
      ON r.source = 'oasst1' AND r.doc->>'parent_id' = root.doc->>'message_id'
    WHERE root.source = 'oasst1' AND root.doc->>'parent_id' IS NULL
      AND root.doc->>'text' = c.messages->0->>'content'
      AND NOT (r.doc->>'deleted')::boolean AND (r.doc->>'review_result')::boolean
    ORDER BY (r.doc->>'rank')::float8 NULLS LAST, r.doc->>'message_id' COLLATE "C" LIMIT 1)
SQL
eq "oasst1: every thread starts with the best-ranked kept reply" "$oasst_best" "0"
eq "oasst1: one thread per tree (top-1), French left out" \
	"SELECT count(*) || ' ' || count(DISTINCT messages->0->>'content') FROM seed_candidates WHERE source LIKE 'oasst1-%'" "34 34"
eq "oasst1: deleted and rejected replies never in a thread" \
	"SELECT count(*) FROM seed_candidates c, jsonb_array_elements(c.messages) m, seed_docs d WHERE c.source LIKE 'oasst1-%' AND d.source = 'oasst1' AND d.doc->>'text' = m->>'content' AND ((d.doc->>'deleted')::boolean OR NOT (d.doc->>'review_result')::boolean)" "0"
eq "ultrachat: turns alternate from the user, the first two kept" \
	"SELECT bool_and(messages->0->>'role' = 'user' AND messages->0->>'content' = d.doc->'data'->>0 AND messages->1->>'content' = d.doc->'data'->>1) FROM seed_candidates c JOIN seed_docs d USING (source, line) WHERE source = 'ultrachat'" "t"
eq "every candidate ends with an assistant reply" \
	"SELECT count(*) FROM seed_candidates WHERE messages->-1->>'role' <> 'assistant'" "0"
eq "hard-coded: no placeholder left anywhere in the mix" \
	"SELECT count(*) FROM seed_mix WHERE sft_placeholders(messages) <> '{}'" "0"
eq "hard-coded: filled with the model's name and maker, identity prompt folded in" \
	"SELECT bool_and(messages->0->>'content' LIKE 'You are tiny-seed, a helpful AI assistant made by the sft project.%') || ' ' || bool_or(messages->1->>'content' LIKE '%tiny-seed%') || ' ' || bool_or(messages->1->>'content' LIKE '%the sft project%') FROM seed_candidates WHERE source = 'hard-coded'" "true true true"

# Training, evaluation and export.
eq "run succeeded with cosine decay and the best epoch kept" \
	"SELECT status || ' ' || (options->>'lr_schedule') || ' ' || (options->>'keep') || ' ' || rows_used FROM sft_runs WHERE output = 'tiny-seed'" \
	"succeeded cosine best 108"
eq "two epochs with validation loss" \
	"SELECT count(validation_loss) FROM sft_run_epochs e JOIN sft_runs r ON r.id = e.run_id WHERE r.output = 'tiny-seed'" "2"
eq "held-out loss falls with training" \
	"SELECT (SELECT loss FROM sft_eval('tiny-seed', 'seed_heldout')) < (SELECT loss FROM sft_eval('tiny-base', 'seed_heldout'))" "t"
check "evaluation printed before and after" [ "$(grep -c 'perplexity' "$log")" -ge 2 ]
check "exported model directory" test -f "$export_dir/model.safetensors" -a -f "$export_dir/config.json" -a -f "$export_dir/tokenizer.json"

# ---------------------------------------------------------------------------
# The demo's SQL (make demo runs it at full size): data, tokenizer and view as
# they are, then training and evaluation on a slice, so that every statement
# of examples/demo_*.sql runs here.
# ---------------------------------------------------------------------------
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -X -q -c "CREATE EXTENSION sft"
demo_log=$SFT_TMP/demo-sql.log
demo_ok=true
for f in demo_tokenizer demo_data demo_view; do
	psql -X -v ON_ERROR_STOP=1 -f examples/$f.sql >>"$demo_log" 2>&1 || demo_ok=false
done
check "demo data, tokenizer and view scripts run" $demo_ok
$demo_ok || tail -20 "$demo_log"
eq "byte tokenizer: 256 bytes + 3 special tokens, chatml" \
	"SELECT vocab_size || ' ' || chat_template || ' ' || array_to_string(special_tokens, ',') FROM sft_tokenizers WHERE name = 'pebble-bytes'" \
	"259 chatml <|endoftext|>,<|im_start|>,<|im_end|>"
eq "byte tokenizer: one token per byte, ids are the bytes" \
	"SELECT sft_tokenize('pebble-bytes', 'A é') = ARRAY[65, 32, 195, 169] AND sft_detokenize('pebble-bytes', ARRAY[65, 32, 195, 169]) = 'A é'" "t"
eq "byte tokenizer: control tokens are single ids in the template" \
	"SELECT (sft_encode('pebble-bytes', '[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]')).input_ids[1:2] = ARRAY[257, 117]" "t"
eq "demo: thousands of training conversations, some with two turns" \
	"SELECT count(*) > 3000 AND bool_or(sft_turns(messages) = 2) AND max(sft_turns(messages)) = 2 FROM demo_train" "t"
eq "demo: system prompts folded, at most 512 tokens" \
	"SELECT count(*) FROM demo_train WHERE messages @> '[{\"role\":\"system\"}]' OR sft_token_count('pebble-bytes', messages) > 512" "0"
eq "demo: the filters dropped three-turn and over-long conversations" \
	"SELECT (SELECT count(*) FROM demo_chats) + (SELECT count(*) FROM demo_sharegpt) + (SELECT count(*) FROM demo_pairs) > (SELECT count(*) FROM demo_train)" "t"
eq "demo: every skill and identity in the test set" \
	"SELECT string_agg(DISTINCT skill, ',' ORDER BY skill) FROM demo_test" "add,count,identity,reverse,upper"
eq "demo: no held-out skill question is a training prompt" \
	"SELECT count(*) FROM demo_test t, demo_train d, jsonb_array_elements(d.messages) m WHERE t.skill <> 'identity' AND m->>'role' = 'user' AND (m->>'content' = t.question OR m->>'content' LIKE '%' || E'\n\n' || t.question)" "0"
eq "demo: no held-out word answer is a training reply" \
	"SELECT count(*) FROM demo_test t, demo_train d, jsonb_array_elements(d.messages) m WHERE t.skill IN ('upper', 'reverse') AND m->>'role' = 'assistant' AND m->>'content' = t.answer" "0"
eq "demo: test-only identity phrasings are not in the training view" \
	"SELECT count(*) FROM demo_train d, demo_identity i WHERE i.split = 'test' AND d.messages::text LIKE '%' || i.question || '%'" "0"
eq "demo: validation items are neither train nor test" \
	"SELECT count(*) FROM demo_items v JOIN demo_items o ON o.skill = v.skill AND o.item = v.item AND o.split <> 'validation' WHERE v.split = 'validation'" "0"

# Training and evaluation on a slice: 128 conversations, two test questions a skill.
psql -X -q -v ON_ERROR_STOP=1 >>"$demo_log" 2>&1 <<'SQL'
ALTER VIEW demo_train RENAME TO demo_train_full;
CREATE VIEW demo_train AS SELECT messages FROM demo_train_full LIMIT 128;
DELETE FROM demo_test t WHERE question NOT IN (
  SELECT question FROM (SELECT question, row_number() OVER (PARTITION BY skill ORDER BY question) n FROM demo_test) s WHERE n <= 2);
SQL
chart=$SFT_TMP/demo-loss.svg
psql -X -v ON_ERROR_STOP=1 -v epochs=1 -v batch_size=16 -v chart="$chart" -f examples/demo_train.sql >>"$demo_log" 2>&1
rc=$?
check "demo training and evaluation script runs (psql status $rc)" [ $rc = 0 ]
[ $rc = 0 ] || tail -20 "$demo_log"
eq "demo: answers before and after for every test question" \
	"SELECT count(*) FILTER (WHERE model = 'before') || ' ' || count(*) FILTER (WHERE model = 'after') FROM demo_answers" "10 10"
check "demo: accuracy table printed" grep -q "before_pct | after_pct" "$demo_log"
check "demo: loss chart written as SVG" grep -q "^<svg" "$chart"

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
echo "$passed passed, $failed failed"
