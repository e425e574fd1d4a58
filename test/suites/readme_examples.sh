#!/bin/bash
# Every ```sql block of README.md, run in order in a scratch database, so that
# the examples cannot rot: a block that raises an error fails.  A block right
# after a line <!-- no-test: reason --> is skipped (kept for the few that
# need what a test cannot have).
#
# The README talks about real paths; the test maps them to stand-ins:
#   /models/SmolLM2-135M   a tiny Llama with a chatml tokenizer, exported here
#                          in HF layout (the same files an HF download has)
#   /models/smollm2-support-lora  a PEFT adapter directory of that stand-in
#   /models/...            other model directories: a scratch directory
#   /data/                 test/fixtures/jsonl/ (synthetic JSONL shaped like
#                          the Hugging Face exports)
set -u
cd "$(dirname "$0")/../.."
passed=0
failed=0
db=sft_readme
models=$SFT_TMP/readme-models
blocks=$SFT_TMP/readme-blocks
rm -rf "$blocks"; mkdir -p "$blocks"
export PGOPTIONS="-c client_min_messages=warning"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" || { echo "0 passed, 1 failed"; exit 1; }
export PGDATABASE=$db

# The stand-in for SmolLM2-135M, made in a database of its own, and for
# /models/smollm2-support-lora a PEFT adapter directory of it (r 2 on
# q_proj, as a fresh PEFT adapter has B = 0; A is all 0.25 here), written
# with lo_export.
mkdir -p "$models/smollm2-support-lora"
chmod 777 "$models" "$models/smollm2-support-lora"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS ${db}_setup" -c "CREATE DATABASE ${db}_setup" >/dev/null
psql -X -q -d ${db}_setup -v ON_ERROR_STOP=1 \
	-v tok="$(cat test/fixtures/tiny_bpe.json)" -v cfg="$(cat test/fixtures/tiny_config_chatml.json)" \
	-v dir="$models/SmolLM2-135M" -v peft="$models/smollm2-support-lora" >"$SFT_TMP/readme-setup.log" 2>&1 <<'SQL'
CREATE EXTENSION sft;
SELECT * FROM sft_tokenizer_load('tiny-tok', :'tok', :'cfg');
SELECT sft_model_create('tiny', 'tiny-tok', '{"hidden_size": 32, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
  "vocab_size": 386, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
  "rope_theta": 10000, "tie_word_embeddings": true}', 7);
SELECT sft_model_export('tiny', :'dir');
-- (lo_export in a statement of its own: it does not see an object created by the same statement)
SELECT lo_from_bytea(0, convert_to('{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2,
  "lora_alpha": 4, "lora_dropout": 0.05, "target_modules": ["q_proj"], "bias": "none"}', 'UTF8')) AS lo \gset
SELECT lo_export(:lo, :'peft' || '/adapter_config.json');
-- four tensors of 64 floats (A [2, 32], B [32, 2] per layer), sorted by name
WITH h AS (
  SELECT '{"__metadata__":{"format":"pt"}' || string_agg(format(',"base_model.model.model.layers.%s.self_attn.q_proj.lora_%s.weight":{"dtype":"F32","shape":%s,"data_offsets":[%s,%s]}',
           l, ab, CASE ab WHEN 'A' THEN '[2,32]' ELSE '[32,2]' END, k * 256, k * 256 + 256), '' ORDER BY k) || '}' AS j
    FROM (SELECT l, ab, row_number() OVER (ORDER BY l, ab) - 1 AS k
            FROM generate_series(0, 1) l, (VALUES ('A'), ('B')) v(ab)) t),
p AS (SELECT j || repeat(' ', (8 - (8 + length(j)) % 8) % 8) AS j FROM h)
SELECT lo_from_bytea(0,
         set_byte(set_byte('\x0000000000000000'::bytea, 0, length(j) % 256), 1, length(j) / 256)
         || convert_to(j, 'UTF8')
         || decode(repeat('0000803e', 64) || repeat('00000000', 64) || repeat('0000803e', 64) || repeat('00000000', 64), 'hex')) AS lo
  FROM p \gset
SELECT lo_export(:lo, :'peft' || '/adapter_model.safetensors');
SQL
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS ${db}_setup" >/dev/null
if [ ! -f "$models/SmolLM2-135M/model.safetensors" ]; then
	cat "$SFT_TMP/readme-setup.log"
	echo "not ok - stand-in model for /models/SmolLM2-135M"
	echo "0 passed, 1 failed"
	exit 1
fi

# Extract the blocks: block_NNN.sql, first line a comment with the README line.
python3 - "$blocks" "$models" "$PWD/test/fixtures/jsonl" <<'PY'
import re, sys
out, models, data = sys.argv[1:4]
lines = open("README.md", encoding="utf-8").read().split("\n")
n = 0
i = 0
skip_reason = None
while i < len(lines):
    line = lines[i]
    m = re.match(r"\s*<!--\s*no-test:\s*(.*?)\s*-->", line)
    if m:
        skip_reason = m.group(1) or "no reason given"
    elif line.strip() == "```sql":
        start = i + 1
        j = start
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = "\n".join(lines[start:j])
        n += 1
        if skip_reason:
            open(f"{out}/block_{n:03d}.skip", "w").write(f"README.md line {start}: {skip_reason}\n")
        else:
            body = body.replace("/models/", models + "/").replace("/data/", data + "/")
            open(f"{out}/block_{n:03d}.sql", "w", encoding="utf-8").write(
                f"-- README.md line {start}\n{body}\n")
        skip_reason = None
        i = j
    elif line.strip():
        skip_reason = None        # the marker applies to the next block only
    i += 1
PY

for f in "$blocks"/block_*; do
	name=$(basename "$f")
	if [ "${f%.skip}" != "$f" ]; then
		echo "# skipped ${name%.skip}: $(cat "$f")"
		continue
	fi
	where=$(head -1 "$f" | sed 's/^-- //')
	if out=$(psql -X -q -v ON_ERROR_STOP=1 -f "$f" 2>&1); then
		passed=$((passed + 1)); echo "ok - ${name%.sql} ($where)"
	else
		failed=$((failed + 1)); echo "not ok - ${name%.sql} ($where)"
		echo "$out" | tail -8 | sed 's/^/#   /'
	fi
done

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
echo "$passed passed, $failed failed"
