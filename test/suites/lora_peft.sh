#!/bin/bash
# lora_peft.sh: LoRA adapters against PEFT's files and PEFT's math.
#
#  1. lora_peft.py writes a random-weight Llama base directory and two PEFT
#     adapter directories as peft's save_pretrained writes them (all-linear
#     r 8; q/v/down r 4 with rslora; random non-zero B).  Both import as
#     adapters of the imported base (base => ...).
#  2. Export is PEFT's format and a byte copy: the exported
#     adapter_model.safetensors is the very file PEFT's layout gives (names,
#     shapes, F32, metadata), and export -> import -> export is byte-exact.
#  3. sft_model_merge: the merged model (exported as an HF directory) holds
#     W + s B A, and its float64 logits equal base + adapter's computed with
#     PEFT's unmerged math in float64 PyTorch, within fp32 rounding.
#  4. Generation on an adapter (shared base, y += s B(A x) in the decoder):
#     greedy tokens equal the merged model's and are the argmax of the
#     float64 base + adapter logits at every step (prompt across the
#     128-token prefill chunk), for sft_generate_tokens and
#     sft_generate_batch.
#
# Runs against the cluster of make test (PGHOST ... exported, $SFT_TMP
# readable by the server).  Needs /usr/bin/python3 with torch.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PYTHON=${SFT_PYTHON:-/usr/bin/python3}
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=sft_lora_peft
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
tap() {						# count the TAP lines of a python step
	local out
	out=$("$@" 2>&1)
	echo "$out"
	passed=$((passed + $(grep -c '^ok ' <<<"$out")))
	failed=$((failed + $(grep -c '^not ok ' <<<"$out")))
	grep -q '^Traceback' <<<"$out" && failed=$((failed + 1))
}
q() { $PSQL -c "$1" 2>&1; }

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
	echo "# skipped: $PYTHON cannot import torch"
	echo "0 passed, 0 failed"
	exit 0
fi
work=$SFT_TMP/lora_peft
rm -rf "$work"
mkdir -p "$work"
chmod 777 "$work"
"$PYTHON" test/suites/lora_peft.py fixture "$work" || { echo "not ok - fixture"; echo "0 passed, 1 failed"; exit 1; }
chmod -R a+rwX "$work"

"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
q "CREATE EXTENSION sft" >/dev/null

# 1. import
check "import the base" "t" "$(q "SELECT sft_model_import('lbase', '$work/base') > 0")"
check "import peft_all as an adapter of it" "$((2 * 8 * (2 * (64 + 64) + 2 * (32 + 64) + 2 * (96 + 64) + (64 + 96))))" \
	"$(q "SELECT sft_model_import('all', '$work/peft_all', base => 'lbase')")"
check "import peft_sub" "$((2 * 4 * ((64 + 64) + (32 + 64) + (64 + 96))))" \
	"$(q "SELECT sft_model_import('sub', '$work/peft_sub', base => 'lbase')")"
check "the adapter rows" "all|lbase|lbase|16|false|{down_proj,gate_proj,k_proj,o_proj,q_proj,up_proj,v_proj}
sub|lbase|lbase|8|true|{down_proj,q_proj,v_proj}" \
	"$(q "SELECT name, parent, tokenizer, adapter->>'lora_alpha', adapter->>'use_rslora',
	             ARRAY(SELECT jsonb_array_elements_text(adapter->'target_modules'))
	        FROM sft_models WHERE adapter IS NOT NULL ORDER BY name")"

# 2. export: PEFT's format, a byte copy, byte-exact round trip
for a in all sub; do
	q "SELECT sft_model_export('$a', '$work/out_$a')" >/dev/null
	check "$a: exported adapter_model.safetensors is PEFT's file, byte for byte" "same" \
		"$(cmp -s "$work/peft_$a/adapter_model.safetensors" "$work/out_$a/adapter_model.safetensors" && echo same || echo differs)"
	tap "$PYTHON" test/suites/lora_peft.py keys "$work/out_$a" "$work/peft_$a"
	q "SELECT sft_model_import('${a}_again', '$work/out_$a', base => 'lbase')" >/dev/null
	q "SELECT sft_model_export('${a}_again', '$work/again_$a')" >/dev/null
	check "$a: export -> import -> export is byte-exact" "same same" \
		"$(cmp -s "$work/out_$a/adapter_model.safetensors" "$work/again_$a/adapter_model.safetensors" && echo same || echo differs) $(cmp -s "$work/out_$a/adapter_config.json" "$work/again_$a/adapter_config.json" && echo same || echo differs)"
done

# 3 + 4. merge, generation
long_text=$(printf 'The sea is wide and the waves are high. %.0s' $(seq 1 14))
for a in all sub; do
	q "SELECT sft_model_merge('$a', '${a}_merged')" >/dev/null
	q "SELECT sft_model_export('${a}_merged', '$work/merged_$a')" >/dev/null
	prompt_sql="sft_tokenize('lbase', '$long_text')"
	prompt=$(q "SELECT array_to_json($prompt_sql)")
	check "$a: the prompt crosses the 128-token prefill chunk" "t" "$(q "SELECT array_length($prompt_sql, 1) > 128")"
	generated=$(q "SELECT array_to_json(sft_generate_tokens('$a', $prompt_sql, 40))")
	check "$a: greedy tokens equal the merged model's" "$generated" \
		"$(q "SELECT array_to_json(sft_generate_tokens('${a}_merged', $prompt_sql, 40))")"
	check "$a: ... and differ from the base's" "t" \
		"$(q "SELECT sft_generate_tokens('lbase', $prompt_sql, 40) <> sft_generate_tokens('$a', $prompt_sql, 40)")"
	check "$a: sft_generate_batch on the adapter answers as the merged model" "t" \
		"$(q "SELECT array_agg(reply ORDER BY ordinality) = ARRAY[sft_generate('${a}_merged', 'Hi there', 20),
		                                                           sft_generate('${a}_merged', 'The waves', 20)]
		        FROM sft_generate_batch('$a', ARRAY['[{\"role\":\"user\",\"content\":\"Hi there\"}]',
		                                            '[{\"role\":\"user\",\"content\":\"The waves\"}]']::jsonb[], 20)")"
	tap "$PYTHON" test/suites/lora_peft.py check "$work" "$work/peft_$a" "$work/merged_$a" "$prompt" "$generated"
done

# one session: the cache is per backend
check "the cache holds one copy of the base, shared by both adapters" "2
all|14848|59392
lbase|111168|444672
sub|3072|12288" \
	"$(q "SELECT count(*) FROM (SELECT sft_generate_tokens('all', ARRAY[1, 2], 2)
	                             UNION ALL SELECT sft_generate_tokens('sub', ARRAY[1, 2], 2)) s;
	      SELECT model, parameters, model_bytes FROM sft_model_cache() ORDER BY model")"

[ -n "${SFT_KEEP_DB:-}" ] || "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
