-- The seed data recipe, as a worked example: fine-tune SmolLM2-135M on a mix
-- of eight Hugging Face datasets, entirely in SQL.
--
--   psql -v data_dir=/data/seed -v model_dir=/models/SmolLM2-135M \
--        -v export_dir=/models/SmolLM2-135M-seed -f examples/seed_recipe/seed_recipe.sql
--
-- data_dir (read by psql, on the client) holds one JSONL export per source,
-- e.g. from Python:
--   load_dataset("HuggingFaceTB/everyday-conversations-llama3.1-2k", split="train_sft")
--       .to_json("everyday-conversations.jsonl")
--   load_dataset("HuggingFaceTB/smoltalk", "smol-rewrite", split="train").to_json("smol-rewrite.jsonl")
--   ... "smol-constraints" -> smol-constraints.jsonl, "smol-summarize" -> smol-summarize.jsonl
--   load_dataset("argilla/magpie-ultra-v1.0", split="train").to_json("magpie-ultra.jsonl")
--   load_dataset("OpenAssistant/oasst1", split="train").to_json("oasst1.jsonl")
--   load_dataset("stingning/ultrachat", split="train").to_json("ultrachat.jsonl")
--   load_dataset("allenai/olmo-2-hard-coded", split="train").to_json("hard-coded.jsonl")
-- The first five have their conversation in "messages" ([{"role", "content"}]);
-- magpie-ultra also tags each row with a "category" ("math", "coding",
-- "information-seeking", ...).  oasst1 has one row per message of its
-- conversation trees (message_id, parent_id, message_tree_id, role
-- prompter/assistant, text, lang, rank, deleted, review_result, ...);
-- ultrachat has its turns as bare strings in "data"; hard-coded has
-- "messages" with placeholders for the model's name and maker
-- (<|MODEL_NAME|>, {{name}}, {{author}}, <|DATE_CUTOFF|>).
--
-- model_dir and export_dir are directories on the database server (import
-- needs superuser or pg_read_server_files, export pg_write_server_files).
--
-- The mix:
--   - all of everyday-conversations;
--   - magpie-ultra without the math and coding/debugging categories;
--   - the smol-rewrite, smol-constraints and smol-summarize subsets of smoltalk;
--   - oasst1: the top-1 thread of every tree (the best-ranked reply at each
--     step; deleted and rejected messages dropped) in the languages of
--     oasst_langs (default English and Spanish), one source per language;
--   - all of ultrachat, turns alternating from the user;
--   - hard-coded: placeholders filled with model_name, model_maker and
--     date_cutoff (a row with a placeholder left unfilled is dropped), and the
--     identity system prompt identity_system added where a row has none;
--   - every source: system prompts folded into the first user message, cut to
--     its first two turns, kept only under 512 tokens of the model's chat
--     template, then 5,000 rows sampled (seeded: the same seed and files give
--     the same rows on any server);
--   - 2% of every source held out (by a hash of the conversation) to
--     validate and evaluate on.
-- Then two epochs with cosine decay, evaluation before and after, export.
--
-- Every knob is a psql variable with the default below (-v name=value).

\set ON_ERROR_STOP on
\if :{?data_dir} \else \echo 'set data_dir: psql -v data_dir=/path/to/jsonl ...' \quit \endif
\if :{?model_dir} \else \echo 'set model_dir: psql -v model_dir=/path/to/SmolLM2-135M ...' \quit \endif
\if :{?export_dir} \else \echo 'set export_dir: psql -v export_dir=/path/for/the/result ...' \quit \endif
\if :{?base} \else \set base smollm2-135m \endif
\if :{?output} \else \set output smollm2-135m-seed \endif
\if :{?seed} \else \set seed 42 \endif
\if :{?per_source} \else \set per_source 5000 \endif
\if :{?max_tokens} \else \set max_tokens 512 \endif
\if :{?max_turns} \else \set max_turns 2 \endif
\if :{?epochs} \else \set epochs 2 \endif
\if :{?learning_rate} \else \set learning_rate 3e-4 \endif
\if :{?batch_size} \else \set batch_size 8 \endif
\if :{?grad_accum} \else \set grad_accum 4 \endif
\if :{?oasst_langs} \else \set oasst_langs 'en,es' \endif
\if :{?model_name} \else \set model_name :output \endif
\if :{?model_maker} \else \set model_maker 'the sft project' \endif
\if :{?date_cutoff} \else \set date_cutoff '' \endif
\if :{?identity_system} \else
  \set identity_system 'You are ' :model_name ', a helpful AI assistant made by ' :model_maker '.'
\endif
\set QUIET on
\pset null '(null)'
\set QUIET off

-- ---------------------------------------------------------------------------
-- 1. Load the JSONL exports: one jsonb document per line.
-- ---------------------------------------------------------------------------
-- CSV with quote and delimiter characters that JSON never contains raw reads
-- each line as it is (text COPY would interpret the backslashes of JSON
-- escapes).  \copy takes no psql variables, hence the :copy indirection.
CREATE TABLE IF NOT EXISTS seed_docs (source text NOT NULL, line bigint NOT NULL, doc jsonb NOT NULL,
                                      PRIMARY KEY (source, line));
TRUNCATE seed_docs;
CREATE TEMP TABLE seed_stage (line bigserial, doc jsonb);

\set copy_options ' WITH (FORMAT csv, QUOTE E''\\x01'', DELIMITER E''\\x02'')'
\set source everyday-conversations
\ir load_source.sql
\set source smol-rewrite
\ir load_source.sql
\set source smol-constraints
\ir load_source.sql
\set source smol-summarize
\ir load_source.sql
\set source magpie-ultra
\ir load_source.sql
\set source oasst1
\ir load_source.sql
\set source ultrachat
\ir load_source.sql
\set source hard-coded
\ir load_source.sql

SELECT source, count(*) AS rows FROM seed_docs GROUP BY source ORDER BY source;

-- ---------------------------------------------------------------------------
-- 2. The base model, and its tokenizer for counting tokens.
-- ---------------------------------------------------------------------------
SELECT sft_model_drop(:'output') FROM sft_models WHERE name = :'output';
SELECT sft_model_drop(:'base') FROM sft_models WHERE name = :'base';
SELECT sft_model_import(:'base', :'model_dir') AS parameters;
SELECT tokenizer AS base_tokenizer FROM sft_models WHERE name = :'base' \gset
SELECT name, kind, vocab_size, chat_template, default_system FROM sft_tokenizers WHERE name = :'base_tokenizer';

-- ---------------------------------------------------------------------------
-- 3. The mix.
-- ---------------------------------------------------------------------------
-- oasst1's messages as the table sft_from_oasst reads (columns by their
-- export names; rank is a float in the export, NULL when unranked).
CREATE OR REPLACE VIEW seed_oasst_messages AS
SELECT doc->>'message_id' AS message_id, doc->>'parent_id' AS parent_id,
       doc->>'message_tree_id' AS message_tree_id, doc->>'role' AS role, doc->>'text' AS text,
       doc->>'lang' AS lang, (doc->>'rank')::float8 AS rank, (doc->>'deleted')::boolean AS deleted,
       (doc->>'review_result')::boolean AS review_result, line
FROM seed_docs WHERE source = 'oasst1';

-- The placeholders of the hard-coded identity rows and their values (an
-- empty date_cutoff fills nothing: rows that need it are dropped).
SELECT jsonb_strip_nulls(jsonb_build_object(
         '<|MODEL_NAME|>', :'model_name', '{{name}}', :'model_name', '{{author}}', :'model_maker',
         '<|DATE_CUTOFF|>', nullif(:'date_cutoff', ''))) AS identity_values \gset

-- Conversations, one row each, from every source's own shape.  Rows that
-- are not conversations become NULL (sft_is_conversation guards the
-- functions that would raise) and drop out at the length filter.
CREATE OR REPLACE VIEW seed_conversations AS
SELECT source, line, CASE WHEN sft_is_conversation(doc->'messages') THEN doc->'messages' END AS messages
FROM seed_docs
WHERE source IN ('everyday-conversations', 'smol-rewrite', 'smol-constraints', 'smol-summarize')
   -- magpie-ultra without math and coding/debugging ("math", "coding",
   -- or "Math" / "Coding & Debugging" as older Magpie sets spell them)
   OR (source = 'magpie-ultra' AND coalesce(lower(doc->>'category'), '') !~ '^(math|coding)')
UNION ALL
-- ultrachat: bare strings, user first (rows with anything else are dropped)
SELECT source, line,
       CASE WHEN jsonb_typeof(doc->'data') = 'array' AND jsonb_array_length(doc->'data') > 0
                 AND NOT jsonb_path_exists(doc->'data', '$[*] ? (@.type() != "string")')
            THEN sft_from_turns(doc->'data') END
FROM seed_docs WHERE source = 'ultrachat'
UNION ALL
-- hard-coded: filled, refused while a placeholder is left, identity system prompt added
SELECT source, line, sft_add_system(filled, :'identity_system')
FROM (SELECT source, line, CASE WHEN sft_is_conversation(doc->'messages')
                                THEN sft_fill(doc->'messages', :'identity_values') END AS filled
      FROM seed_docs WHERE source = 'hard-coded') h
WHERE sft_placeholders(filled) = '{}'
UNION ALL
-- oasst1: the top-1 thread of each tree whose prompt is in one of oasst_langs,
-- one source per language; line: the line of the thread's last message
SELECT 'oasst1-' || root.lang, m.line, t.messages
FROM sft_from_oasst('seed_oasst_messages', 'top1') t
JOIN seed_oasst_messages root ON root.message_tree_id = t.tree_id AND root.parent_id IS NULL
JOIN seed_oasst_messages m ON m.message_id = t.last_message_id
WHERE root.lang = ANY (string_to_array(:'oasst_langs', ','));

-- Candidates: every source's conversations, shaped.
CREATE OR REPLACE VIEW seed_candidates AS
SELECT source, line, messages,
       -- 2% held out, by a hash of the conversation: stable across reloads
       get_byte(decode(md5('holdout:' || messages::text), 'hex'), 0) < 5 AS held_out
FROM (SELECT source, line, sft_truncate_turns(sft_merge_system(messages), :max_turns) AS messages
      FROM seed_conversations) shaped
WHERE sft_turns(messages) >= 1
  AND messages->-1->>'role' = 'assistant'       -- ends with a reply
  AND sft_token_count(:'base_tokenizer', messages) < :max_tokens;

-- The training mix: per_source rows of each source, sampled by a seeded hash
-- of the conversation (ORDER BY random() would differ on every read, and the
-- worker reads the view when the run starts).
CREATE OR REPLACE VIEW seed_mix AS
SELECT source, messages
FROM (SELECT source, messages,
             row_number() OVER (PARTITION BY source
                                ORDER BY md5(:'seed' || ':' || messages::text), line) AS pick
      FROM seed_candidates WHERE NOT held_out) ranked
WHERE pick <= :per_source;

CREATE OR REPLACE VIEW seed_heldout AS
SELECT source, messages FROM seed_candidates WHERE held_out;

-- What each step kept, per source.
SELECT coalesce(d.source, c.source) AS source, d.rows AS loaded, c.candidates, c.held_out, m.mixed
FROM (SELECT source, count(*) AS rows FROM seed_docs GROUP BY source) d
FULL JOIN (SELECT source, count(*) FILTER (WHERE NOT held_out) AS candidates,
                  count(*) FILTER (WHERE held_out) AS held_out
           FROM seed_candidates GROUP BY source) c ON c.source = d.source
LEFT JOIN (SELECT source, count(*) AS mixed FROM seed_mix GROUP BY source) m ON m.source = coalesce(d.source, c.source)
ORDER BY 1;

SELECT count(*) AS conversations, max(sft_turns(messages)) AS max_turns,
       bool_or(messages @> '[{"role": "system"}]') AS any_system_message,
       max(sft_token_count(:'base_tokenizer', messages)) AS max_tokens
FROM seed_mix;

-- ---------------------------------------------------------------------------
-- 4. Train: two epochs, cosine decay, the best epoch by held-out loss.
-- ---------------------------------------------------------------------------
SELECT rows, tokens, round(loss::numeric, 4) AS loss, round(perplexity::numeric, 2) AS perplexity
FROM sft_eval(:'base', 'seed_heldout', :max_tokens);

SELECT sft_train('seed_mix', :'base', :'output',
                 epochs => :epochs, learning_rate => :learning_rate,
                 max_length => :max_tokens, batch_size => :batch_size,
                 options => jsonb_build_object(
                     'grad_accum', :grad_accum, 'lr_schedule', 'cosine', 'warmup_ratio', 0.1,
                     'weight_decay', 0.01, 'seed', :seed,
                     'validation', 'seed_heldout', 'keep', 'best')) AS run \gset
SELECT sft_wait(:run);
SELECT id, status, rows_used, rows_too_long, tokens, steps_done, round(final_loss::numeric, 4) AS final_loss,
       finished - started AS took, error
FROM sft_runs WHERE id = :run;
SELECT epoch, step, round(train_loss::numeric, 4) AS train_loss,
       round(validation_loss::numeric, 4) AS validation_loss
FROM sft_run_epochs WHERE run_id = :run ORDER BY epoch;

-- ---------------------------------------------------------------------------
-- 5. Evaluate, talk to it, export.
-- ---------------------------------------------------------------------------
SELECT rows, tokens, round(loss::numeric, 4) AS loss, round(perplexity::numeric, 2) AS perplexity
FROM sft_eval(:'output', 'seed_heldout', :max_tokens);

SELECT sft_generate(:'output', '[{"role": "user", "content": "Rewrite this more politely: send me the report now."}]'::jsonb,
                    max_new_tokens => 64) AS answer;
-- who it says it is (the hard-coded identity rows were filled with model_name and model_maker)
SELECT sft_generate(:'output', '[{"role": "user", "content": "Who are you?"}]'::jsonb, max_new_tokens => 64) AS identity;

SELECT sft_model_export(:'output', :'export_dir') AS files;
