#!/bin/bash
# generate_reference.sh: sft_generate against outputs known in advance.
#
#  1. Hand-made "bigram" models (generate_reference.py craft) whose greedy
#     output is fixed by construction, imported with sft_model_import: the
#     reply must be exactly the chain of tokens the weights spell, ending at
#     the end-of-turn token (chat) or the config's end-of-sequence token
#     (raw), cut by max_new_tokens and stop strings, streamed in valid UTF-8
#     pieces (a chain of multi-byte characters split into byte tokens), and
#     never show an id the tokenizer cannot decode (a decoy id outranks the
#     chain at one step; only the token-level function returns it).
#  2. Random models exported with sft_model_export: every greedy token of
#     sft_generate_tokens must be the argmax of an independent float64 numpy
#     implementation of the Hugging Face Llama forward over the whole sequence
#     (no KV cache), up to ties within 1e-4; prompts cross the decoder's
#     128-token prefill chunk; GQA, MHA, untied heads, head_dim != C / NH.
#
# Runs against the cluster of make test (PGHOST ... exported, $SFT_TMP
# readable by the server).  Needs /usr/bin/python3 with numpy.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PYTHON=${SFT_PYTHON:-/usr/bin/python3}
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=sft_generate_reference
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

if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	echo "# skipped: $PYTHON cannot import numpy"
	echo "0 passed, 0 failed"
	exit 0
fi
work=$SFT_TMP/generate_reference
mkdir -p "$work"
chmod 777 "$work"

"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
q "CREATE EXTENSION sft" >/dev/null
$PSQL -v tj="$(cat test/fixtures/tiny_bpe.json)" -v tc="$(cat test/fixtures/tiny_config_chatml.json)" \
	>/dev/null <<'SQL'
SELECT sft_tokenizer_load('ref_tok', :'tj', :'tc');
SQL

# ---------------------------------------------------------------------------
# 1. Hand-made models
# ---------------------------------------------------------------------------
reply='Paris is the capital.'
raw_prompt='The sea'
raw_reply=' Thanks, that helps a lot'
utf8_reply='é☕Ж!'
hi='[{"role": "user", "content": "Hi"}]'

# chain edges as JSON: "\n" (the generation prompt's last token) -> reply -> end
chain_sql() {				# start ids, text, end id
	echo "SELECT json_agg(json_build_array(a[i], a[i + 1]))
	        FROM (SELECT $1 || sft_tokenize('ref_tok', '$2') || ARRAY[$3] AS a) s,
	             generate_series(1, array_length(a, 1) - 1) i"
}
nl=$(q "SELECT (sft_tokenize('ref_tok', sft_render('ref_tok', '$hi', true), true))[array_upper(sft_tokenize('ref_tok', sft_render('ref_tok', '$hi', true), true), 1)]")
check "the generation prompt ends with a newline token" "10" "$nl"
raw_last=$(q "SELECT (sft_tokenize('ref_tok', '$raw_prompt'))[array_upper(sft_tokenize('ref_tok', '$raw_prompt'), 1)]")
second=$(q "SELECT (sft_tokenize('ref_tok', '$reply'))[2]")
chain_en=$(q "SELECT json_agg(e) FROM (SELECT json_array_elements(($(chain_sql "ARRAY[$nl]" "$reply" 378))) e
                                      UNION ALL SELECT json_array_elements(($(chain_sql "ARRAY[$raw_last]" "$raw_reply" 376)))) s")
chain_utf8=$(q "$(chain_sql "ARRAY[$nl]" "$utf8_reply" 378)")
cat >"$work/en.json" <<JSON
{"vocab_size": 400, "eos_token_id": 376, "seed": 1, "chain": $chain_en,
 "decoys": [{"id": 399, "after": $second, "scale": 1.5}],
 "tokenizer_json": "test/fixtures/tiny_bpe.json", "tokenizer_config_json": "test/fixtures/tiny_config_chatml.json"}
JSON
cat >"$work/utf8.json" <<JSON
{"vocab_size": 386, "eos_token_id": 378, "seed": 2, "chain": $chain_utf8,
 "tokenizer_json": "test/fixtures/tiny_bpe.json", "tokenizer_config_json": "test/fixtures/tiny_config_chatml.json"}
JSON
if ! "$PYTHON" test/suites/generate_reference.py craft "$work/bigram_en" "$work/en.json" ||
	! "$PYTHON" test/suites/generate_reference.py craft "$work/bigram_utf8" "$work/utf8.json"; then
	echo "not ok - crafting the bigram models"
	echo "$passed passed, $((failed + 1)) failed"
	exit 1
fi
check "import bigram_en" "t" "$(q "SELECT sft_model_import('bigram_en', '$work/bigram_en') > 0")"
check "import bigram_utf8" "t" "$(q "SELECT sft_model_import('bigram_utf8', '$work/bigram_utf8') > 0")"

check "greedy reply ends at the end-of-turn token" "$reply" \
	"$(q "SELECT sft_generate('bigram_en', '$hi'::jsonb, 50)")"
check "text form" "$reply" "$(q "SELECT sft_generate('bigram_en', 'Hi', 50)")"
check "sampling at temperature 0.7 follows a margin of 64 logits" "$reply" \
	"$(q "SELECT sft_generate('bigram_en', '$hi'::jsonb, 50, temperature => 0.7, seed => 5)")"
check "max_new_tokens cuts the reply" "Par" "$(q "SELECT sft_generate('bigram_en', '$hi'::jsonb, 3)")"
check "stop string" "Paris is " "$(q "SELECT sft_generate('bigram_en', '$hi'::jsonb, 50, stop => '{the}')")"
check "stop string across tokens" "Paris i" "$(q "SELECT sft_generate('bigram_en', '$hi'::jsonb, 50, stop => '{\"s t\"}')")"
check "earliest of two stop strings" "Paris" "$(q "SELECT sft_generate('bigram_en', '$hi'::jsonb, 50, stop => '{capital, \" is\"}')")"
check "stop string that never occurs" "$reply" "$(q "SELECT sft_generate('bigram_en', '$hi'::jsonb, 50, stop => '{Lyon}')")"
check "stream rows concatenate to the reply" "$reply|t" \
	"$(q "SELECT string_agg(p, '' ORDER BY n) || '|' || CASE WHEN count(*) > 3 THEN 't' ELSE 'f' END FROM sft_generate_stream('bigram_en', '$hi'::jsonb, 50) WITH ORDINALITY t(p, n)")"
check "stream with a stop string" "Paris is the " \
	"$(q "SELECT string_agg(p, '' ORDER BY n) FROM sft_generate_stream('bigram_en', '$hi'::jsonb, 50, stop => '{capital}') WITH ORDINALITY t(p, n)")"
check "token level: the decoy id the tokenizer lacks outranks the chain" "t" \
	"$(q "SELECT (sft_generate_tokens('bigram_en', sft_tokenize('ref_tok', sft_render('ref_tok', '$hi', true), true), 3))[3] = 399")"
check "token level: the end-of-turn id ends and is kept" "t" \
	"$(q "SELECT sft_generate_tokens('bigram_en', ARRAY[(sft_tokenize('ref_tok', '$reply'))[5]], 50)
	          = (sft_tokenize('ref_tok', '$reply'))[6:] || 378")"
check "raw continuation ends at the config's end-of-sequence id" "$raw_reply" \
	"$(q "SELECT sft_generate_raw('bigram_en', '$raw_prompt', 50)")"
check "raw token level ends with id 376" "376" \
	"$(q "SELECT (sft_generate_tokens('bigram_en', sft_tokenize('ref_tok', '$raw_prompt'), 50))[9]")"
check "sft_loss of the spelled reply is near 0" "t" \
	"$(q "SELECT sft_loss('bigram_utf8', sft_from_pair('Hi', '$utf8_reply')) < 1e-3")"
# bigram_en: at 1 of the reply's 9 targets the decoy's logit is 1.5 * 64 against
# the chain's 64, so that target costs 32 nats and the mean is 32 / 9
check "sft_loss counts the whole vocabulary: the decoy costs 32 nats of 9 targets" "t" \
	"$(q "SELECT abs(sft_loss('bigram_en', sft_from_pair('Hi', '$reply')) - 32.0 / 9) < 1e-3")"
check "sft_loss of another reply is large" "t" \
	"$(q "SELECT sft_loss('bigram_utf8', sft_from_pair('Hi', 'Lyon')) > 5")"
check "UTF-8 reply from byte tokens" "$utf8_reply" "$(q "SELECT sft_generate('bigram_utf8', '$hi'::jsonb, 50)")"
check "UTF-8 stream pieces are whole characters" "{é,☕,Ж,!}" \
	"$(q "SELECT array_agg(p ORDER BY n) FROM sft_generate_stream('bigram_utf8', '$hi'::jsonb, 50) WITH ORDINALITY t(p, n)")"
check "UTF-8 reply cut mid-character by max_new_tokens shows U+FFFD" "é�" \
	"$(q "SELECT sft_generate('bigram_utf8', '$hi'::jsonb, 3)")"
check "UTF-8 stream cut mid-character: whole pieces, then U+FFFD" "{é,�}" \
	"$(q "SELECT array_agg(p ORDER BY n) FROM sft_generate_stream('bigram_utf8', '$hi'::jsonb, 4) WITH ORDINALITY t(p, n)")"

# ---------------------------------------------------------------------------
# 2. Greedy decode against the float64 reference forward
# ---------------------------------------------------------------------------
long_text=$(printf 'The sea is wide and the waves are high. %.0s' $(seq 1 12))
parity() {					# name, config, prompt-ids SQL, new tokens
	local name=$1 config=$2 prompt_sql=$3 n=$4 dir prompt generated result
	dir=$work/export_$name
	q "SELECT sft_model_create('$name', 'ref_tok', '$config', 11)" >/dev/null
	prompt=$(q "SELECT array_to_json($prompt_sql)")
	generated=$(q "SELECT array_to_json(sft_generate_tokens('$name', $prompt_sql, $n))")
	q "SELECT sft_model_export('$name', '$dir')" >/dev/null
	result=$("$PYTHON" test/suites/generate_reference.py check "$dir" "$prompt" "$generated")
	echo "# $name: prompt $(echo "$prompt" | tr ',' '\n' | wc -l) tokens, $result"
	check "$name: every greedy token is the reference argmax" "t" \
		"$(echo "$result" | "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin); print("t" if r["steps"] == '"$n"' and r["within_1e-4"] == r["steps"] else "f")')"
}
parity ref_gqa_tied '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 386, "max_position_embeddings": 512, "tie_word_embeddings": true}' \
	"sft_tokenize('ref_tok', sft_render('ref_tok', '$hi', true), true)" 40
parity ref_long_prompt '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 96, "vocab_size": 386, "max_position_embeddings": 512, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false}' \
	"sft_tokenize('ref_tok', '$long_text')" 30
parity ref_mha '{"hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 3, "num_key_value_heads": 3, "intermediate_size": 80, "vocab_size": 390, "max_position_embeddings": 256, "tie_word_embeddings": false}' \
	"sft_tokenize('ref_tok', 'Write a short poem about the sea.')" 60

[ -n "${SFT_KEEP_DB:-}" ] || "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
