-- Generation from SQL: the text, stream, raw and token forms; sampling and
-- its settings; stop strings; context limits; bad input; the model cache.
SET client_min_messages = warning;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer FROM sft_tokenizer_load('gen_tok', :'tokjson', :'tokcfg');
\set cfg '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 128, "tie_word_embeddings": false}'
SELECT sft_model_create('gen_m', 'gen_tok', :'cfg', 7) > 0 AS created;
RESET client_min_messages;
\set hello '[{"role": "user", "content": "Hello!"}]'

-- ---------------------------------------------------------------------------
-- Greedy decoding is deterministic, and the text is the token-level result
-- decoded: the chat template's generation prompt, then max_new_tokens ids.
-- ---------------------------------------------------------------------------
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) AS greedy \gset
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = :'greedy' AS greedy_repeats,
       length(:'greedy') > 0 AS not_empty;
SELECT sft_tokenize('gen_tok', sft_render('gen_tok', :'hello', true), true) AS prompt_ids \gset
SELECT array_length(sft_generate_tokens('gen_m', :'prompt_ids', 24), 1) AS n_tokens;
SELECT sft_detokenize('gen_tok', sft_generate_tokens('gen_m', :'prompt_ids', 24), true) = :'greedy'
       AS text_is_decoded_tokens;
-- fewer tokens give a prefix of the text
SELECT starts_with(:'greedy', sft_generate('gen_m', :'hello'::jsonb, 5)) AS shorter_is_prefix,
       sft_generate_tokens('gen_m', :'prompt_ids', 5)
       = (sft_generate_tokens('gen_m', :'prompt_ids', 24))[1:5] AS tokens_prefix;
-- the text overload is one user message
SELECT sft_generate('gen_m', 'Hello!'::text, 24) = :'greedy' AS text_form_same;
SELECT sft_generate('gen_m', messages => :'hello', max_new_tokens => 24) = :'greedy' AS named_form_same;
-- a system message changes the prompt (it replaces the template's default)
SELECT sft_generate('gen_m', '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]'::jsonb, 24)
       <> :'greedy' AS system_changes_reply;
-- raw continuation: no template; special-token text is the special token
SELECT sft_generate_raw('gen_m', 'The sea is', 16)
       = sft_detokenize('gen_tok', sft_generate_tokens('gen_m', sft_tokenize('gen_tok', 'The sea is', true), 16), true)
       AS raw_is_decoded_tokens;
SELECT sft_generate_raw('gen_m', sft_render('gen_tok', :'hello', true), 24) = :'greedy' AS raw_of_rendered_prompt;

-- ---------------------------------------------------------------------------
-- Sampling: a seed reproduces the text; settings that leave one candidate are
-- greedy; temperature 0 ignores the seed.
-- ---------------------------------------------------------------------------
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 1.0, seed => 42) AS sampled \gset
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 1.0, seed => 42) = :'sampled' AS same_seed_same_text,
       :'sampled' <> :'greedy' AS sampled_differs_from_greedy;
SELECT count(DISTINCT sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 1.0, seed => s)) > 1 AS seeds_differ
  FROM generate_series(1, 5) s;
SELECT count(DISTINCT sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 1.0)) > 1 AS no_seed_is_random
  FROM generate_series(1, 5) s;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 0.8, top_k => 1, seed => 3) = :'greedy' AS top_k_1_is_greedy,
       sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 0.8, top_p => 1e-9, seed => 3) = :'greedy' AS tiny_top_p_is_greedy,
       sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 0, seed => 3) = :'greedy' AS greedy_ignores_seed,
       sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 1.0, top_k => 5, top_p => 0.9, seed => 9)
     = sft_generate('gen_m', :'hello'::jsonb, 24, temperature => 1.0, top_k => 5, top_p => 0.9, seed => 9) AS filtered_repeats;
SELECT sft_generate_tokens('gen_m', :'prompt_ids', 24, temperature => 1.0, seed => 42)
     = sft_generate_tokens('gen_m', :'prompt_ids', 24, temperature => 1.0, seed => 42) AS tokens_same_seed;

-- ---------------------------------------------------------------------------
-- Streaming: one row per piece, never empty, concatenated = sft_generate.
-- ---------------------------------------------------------------------------
SELECT count(*) > 1 AS several_rows, bool_and(length(piece) > 0) AS no_empty_piece,
       string_agg(piece, '' ORDER BY n) = :'greedy' AS concatenation_is_greedy
  FROM sft_generate_stream('gen_m', :'hello'::jsonb, 24) WITH ORDINALITY AS t(piece, n);
SELECT string_agg(piece, '' ORDER BY n) = :'sampled' AS concatenation_is_sampled
  FROM sft_generate_stream('gen_m', :'hello'::jsonb, 24, temperature => 1.0, seed => 42) WITH ORDINALITY AS t(piece, n);
SELECT string_agg(piece, '' ORDER BY n) = :'greedy' AS text_form_stream
  FROM sft_generate_stream('gen_m', 'Hello!', 24) WITH ORDINALITY AS t(piece, n);
-- in the select list the rows come one by one, as they are generated
SELECT string_agg(p, '') = :'greedy' AS select_list_stream
  FROM (SELECT sft_generate_stream('gen_m', :'hello'::jsonb, 24) AS p) s;
-- a scan stopped early gives the model back
SELECT length(p) > 0 AS first_piece FROM (SELECT sft_generate_stream('gen_m', :'hello'::jsonb, 24) AS p LIMIT 1) s;
SELECT model, in_use FROM sft_model_cache() WHERE model = 'gen_m';

-- near-uniform sampling (temperature 3) over a byte-level vocabulary makes
-- broken UTF-8 of every kind: pieces stay whole characters (convert_from
-- validates them) and the stream still concatenates to the text
SELECT count(*) AS seeds,
       bool_and(streamed = whole) AS stream_is_text,
       bool_and(valid) AS pieces_valid_utf8, sum(n_pieces) > 30 * 8 AS many_pieces,
       count(*) FILTER (WHERE strpos(whole, U&'\FFFD') > 0) > 0 AS some_replacement_chars
  FROM generate_series(1, 30) s,
       LATERAL (SELECT sft_generate('gen_m', 'The sea is', 24, temperature => 3.0, seed => s) AS whole) g,
       LATERAL (SELECT string_agg(p, '' ORDER BY n) AS streamed, count(*) AS n_pieces,
                       bool_and(convert_from(convert_to(p, 'UTF8'), 'UTF8') = p AND length(p) > 0) AS valid
                  FROM sft_generate_stream('gen_m', 'The sea is', 24, temperature => 3.0, seed => s)
                       WITH ORDINALITY t(p, n)) st;

-- ---------------------------------------------------------------------------
-- Stop strings: the text ends just before the first occurrence of any.
-- ---------------------------------------------------------------------------
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, stop => ARRAY[substr(:'greedy', 6, 3)])
     = left(:'greedy', strpos(:'greedy', substr(:'greedy', 6, 3)) - 1) AS cut_before_stop;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, stop => ARRAY[substr(:'greedy', 9, 2), substr(:'greedy', 4, 4)])
     = left(:'greedy', least(strpos(:'greedy', substr(:'greedy', 9, 2)), strpos(:'greedy', substr(:'greedy', 4, 4))) - 1)
       AS earliest_stop_wins;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, stop => ARRAY[left(:'greedy', 2)]) = '' AS stop_at_start;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, stop => ARRAY['never in the output ' || chr(10000)]) = :'greedy' AS absent_stop;
SELECT coalesce(string_agg(piece, '' ORDER BY n), '')
     = sft_generate('gen_m', :'hello'::jsonb, 24, stop => ARRAY[substr(:'greedy', 6, 3)]) AS stream_stops_too
  FROM sft_generate_stream('gen_m', :'hello'::jsonb, 24, stop => ARRAY[substr(:'greedy', 6, 3)]) WITH ORDINALITY AS t(piece, n);
SELECT sft_generate('gen_m', :'hello'::jsonb, 24, stop => '{}') = :'greedy' AS empty_stop_list;

-- ---------------------------------------------------------------------------
-- The context (128 tokens here): prompt + reply never exceed it.
-- ---------------------------------------------------------------------------
SELECT array_length(:'prompt_ids'::int[], 1) AS prompt_tokens;
SELECT array_length(sft_generate_tokens('gen_m', :'prompt_ids', 128), 1) AS tokens_until_full;
SELECT length(sft_generate('gen_m', :'hello'::jsonb, 128)) > 0 AS full_context_text;
SELECT array_length(sft_generate_tokens('gen_m', array_fill(72, ARRAY[127]), 10), 1) AS one_token_room;

-- ---------------------------------------------------------------------------
-- Bad input: clear errors, nothing kept busy.
-- ---------------------------------------------------------------------------
SELECT sft_generate('no_such_model', :'hello'::jsonb);
SELECT sft_generate(NULL, :'hello'::jsonb);
SELECT sft_generate('gen_m', NULL::jsonb);
SELECT sft_generate('gen_m', NULL::text);
SELECT sft_generate('gen_m', :'hello'::jsonb, NULL);
SELECT sft_generate('gen_m', :'hello'::jsonb, temperature => NULL);
SELECT sft_generate('gen_m', :'hello'::jsonb, top_k => NULL);
SELECT sft_generate('gen_m', :'hello'::jsonb, top_p => NULL);
SELECT sft_generate('gen_m', :'hello'::jsonb, 0);
SELECT sft_generate('gen_m', :'hello'::jsonb, -5);
SELECT sft_generate('gen_m', :'hello'::jsonb, 129);
SELECT sft_generate('gen_m', :'hello'::jsonb);
SELECT sft_generate('gen_m', :'hello'::jsonb, temperature => -0.5);
SELECT sft_generate('gen_m', :'hello'::jsonb, temperature => 'NaN');
SELECT sft_generate('gen_m', :'hello'::jsonb, temperature => 'Infinity');
SELECT sft_generate('gen_m', :'hello'::jsonb, top_k => -1);
SELECT sft_generate('gen_m', :'hello'::jsonb, top_p => 0);
SELECT sft_generate('gen_m', :'hello'::jsonb, top_p => 1.5);
SELECT sft_generate('gen_m', :'hello'::jsonb, top_p => -0.1);
SELECT sft_generate('gen_m', :'hello'::jsonb, stop => ARRAY['a', NULL]);
SELECT sft_generate('gen_m', :'hello'::jsonb, stop => ARRAY['']);
SELECT sft_generate('gen_m', :'hello'::jsonb, stop => (SELECT array_agg(i::text) FROM generate_series(1, 65) i));
SELECT sft_generate('gen_m', '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]'::jsonb, 4);
SELECT sft_generate('gen_m', '[]'::jsonb, 4);
SELECT sft_generate('gen_m', '{"role": "user"}'::jsonb, 4);
SELECT sft_generate('gen_m', '[{"role": "robot", "content": "Hi"}]'::jsonb, 4);
SELECT sft_generate('gen_m', repeat('hello there ', 80), 4);
SELECT sft_generate('gen_m', '[{"role": "user", "content": "Hello!"}]', 4);
SELECT sft_generate('gen_m', '  [{"role": "user", "content": "Hello!"}]  '::text, 4);
SELECT sft_generate('gen_m', '[1, 2] is a list'::text, 4) IS NOT NULL AS json_looking_text_is_fine;
SELECT sft_generate_raw('gen_m', '', 4);
SELECT sft_generate_raw('gen_m', NULL);
SELECT sft_generate_tokens('gen_m', '{}'::int[], 4);
SELECT sft_generate_tokens('gen_m', '{1, -1}'::int[], 4);
SELECT sft_generate_tokens('gen_m', '{1, 386}'::int[], 4);
SELECT sft_generate_tokens('gen_m', '{1, NULL}'::int[], 4);
SELECT sft_generate_tokens('gen_m', '{{1, 2}, {3, 4}}'::int[], 4);
SELECT sft_generate_tokens('gen_m', array_fill(72, ARRAY[128]), 1);
SELECT * FROM sft_generate_stream('gen_m', :'hello'::jsonb, 0);
SELECT * FROM sft_generate_stream('no_such_model', 'Hello!');
-- a tokenizer without a chat template: chat forms refuse, raw and token forms work
SET client_min_messages = warning;
SELECT tokenizer FROM sft_tokenizer_load('gen_tok_plain', :'tokjson');
SELECT sft_model_create('gen_plain', 'gen_tok_plain', :'cfg', 7) > 0 AS created;
RESET client_min_messages;
SELECT sft_generate('gen_plain', :'hello'::jsonb, 4);
SELECT length(sft_generate_raw('gen_plain', 'The sea is', 4)) > 0 AS raw_without_template;
-- errors left nothing in use
SELECT model, in_use FROM sft_model_cache() ORDER BY model;

-- ---------------------------------------------------------------------------
-- The model cache: hits, invalidation when the model is re-created or
-- dropped, the memory bound, errors and cancellation mid-generation.
-- ---------------------------------------------------------------------------
SELECT sft_model_cache_clear() >= 1 AS cleared;
SELECT count(*) AS cached_after_clear FROM sft_model_cache();
SELECT length(sft_generate('gen_m', :'hello'::jsonb, 4)) > 0 AS loaded;
SELECT length(sft_generate('gen_m', :'hello'::jsonb, 4)) > 0 AS from_cache;
SELECT c.model, c.weights = m.weights AS same_weights, c.parameters, c.model_bytes = 4 * c.parameters AS fp32_bytes,
       c.work_bytes > 0 AS has_kv_cache, c.hits, c.in_use, c.loaded_at <= c.last_used AS times_ordered
  FROM sft_model_cache() c JOIN sft_models m ON m.name = c.model;
-- re-created under the same name: the cache sees the new weights
SELECT sft_model_drop('gen_m');
SELECT sft_generate('gen_m', :'hello'::jsonb, 4);
SELECT count(*) AS dropped_model_not_cached FROM sft_model_cache() WHERE model = 'gen_m';
SET client_min_messages = warning;
SELECT sft_model_create('gen_m', 'gen_tok', :'cfg', 8) > 0 AS recreated;
RESET client_min_messages;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) <> :'greedy' AS new_weights_new_text;
SELECT c.weights = m.weights AS cache_has_new_weights, c.hits
  FROM sft_model_cache() c JOIN sft_models m ON m.name = c.model WHERE c.model = 'gen_m';
-- the bound: two models of 0.6 MB do not fit in 1 MB; the least recently used goes
SET client_min_messages = warning;
SELECT sft_model_create(name, 'gen_tok', '{"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 386, "max_position_embeddings": 128, "tie_word_embeddings": false}', 1)
  FROM (VALUES ('gen_a'), ('gen_b')) v(name);
RESET client_min_messages;
SET sft.model_cache_size = '1MB';
SELECT model FROM sft_model_cache() ORDER BY model;
SELECT length(sft_generate_raw('gen_a', 'The sea', 4)) > 0 AS used_a;
SELECT model, model_bytes FROM sft_model_cache() ORDER BY model;
SELECT length(sft_generate_raw('gen_b', 'The sea', 4)) > 0 AS used_b;
SELECT model, model_bytes FROM sft_model_cache() ORDER BY model;
SELECT sum(model_bytes + work_bytes) <= 1024 * 1024 AS within_bound FROM sft_model_cache();
RESET sft.model_cache_size;
SELECT length(sft_generate_raw('gen_a', 'The sea', 4)) > 0 AS used_a_again;
SELECT model, hits FROM sft_model_cache() ORDER BY last_used;
SET sft.model_cache_size = 0;
SELECT count(*) AS nothing_kept_at_size_0 FROM sft_model_cache();
SELECT length(sft_generate('gen_m', :'hello'::jsonb, 4)) > 0 AS works_uncached;
SELECT count(*) AS still_nothing_kept FROM sft_model_cache();
RESET sft.model_cache_size;
SHOW sft.model_cache_size;
SET sft.model_cache_size = -1;
-- an error in the middle of a streaming scan gives the model back
SELECT length(sft_generate('gen_m', :'hello'::jsonb, 4)) > 0 AS warm;
SELECT CASE WHEN length(p) > 0 THEN 1 / 0 END FROM (SELECT sft_generate_stream('gen_m', :'hello'::jsonb, 24) AS p) s;
SELECT model, in_use FROM sft_model_cache() WHERE model = 'gen_m';
-- ... and so does a cancelled generation (a bigger model, so that it takes long enough)
SET client_min_messages = warning;
SELECT sft_model_create('gen_big', 'gen_tok', '{"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 386, "max_position_embeddings": 4096}', 1) > 0 AS created;
RESET client_min_messages;
SELECT length(sft_generate_raw('gen_big', 'The sea', 1)) > 0 AS loaded_before_the_timeout;
SET statement_timeout = '200ms';
SELECT length(sft_generate_raw('gen_big', 'The sea', 4000)) > 0;
RESET statement_timeout;
SELECT model, in_use FROM sft_model_cache() WHERE model = 'gen_big';
SELECT length(sft_generate('gen_m', :'hello'::jsonb, 24)) > 0 AS works_after_errors;

-- ---------------------------------------------------------------------------
-- Privileges: reading a model needs SELECT on its weights' large object, on
-- every call, even when this backend has the model cached.
-- ---------------------------------------------------------------------------
CREATE ROLE gen_reader;
SELECT length(sft_generate('gen_m', :'hello'::jsonb, 4)) > 0 AS cached_by_superuser;
SET ROLE gen_reader;
\set VERBOSITY terse
SELECT sft_generate('gen_m', :'hello'::jsonb, 4);
\set VERBOSITY default
RESET ROLE;
DO $$ BEGIN
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO gen_reader', (SELECT weights FROM sft_models WHERE name = 'gen_m'));
END $$;
SET ROLE gen_reader;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = sft_generate('gen_m', 'Hello!', 24) AS reader_generates;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- A model's own system prompt (sft_model_set_system): used when the
-- conversation has none, before the template's default; the conversation's
-- own system message wins; NULL removes it; only the owner may set it.
-- ---------------------------------------------------------------------------
\set sys_hello '[{"role": "system", "content": "You are Gen, made by the sft tests."}, {"role": "user", "content": "Hello!"}]'
\set own_sys '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]'
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) AS plain \gset
SELECT sft_generate('gen_m', :'sys_hello'::jsonb, 24) AS with_sys \gset
SELECT sft_generate('gen_m', :'own_sys'::jsonb, 24) AS with_own \gset
SELECT :'with_sys' <> :'plain' AS the_system_prompt_matters;
SELECT sft_model_set_system('gen_m', 'You are Gen, made by the sft tests.');
SELECT system_prompt FROM sft_models WHERE name = 'gen_m';
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = :'with_sys' AS model_system_used,
       sft_generate('gen_m', 'Hello!'::text, 24) = :'with_sys' AS text_form_uses_it,
       sft_generate('gen_m', :'own_sys'::jsonb, 24) = :'with_own' AS own_system_wins,
       (SELECT string_agg(piece, '') FROM sft_generate_stream('gen_m', :'hello'::jsonb, 24) AS t(piece)) = :'with_sys'
       AS stream_uses_it,
       sft_generate_raw('gen_m', sft_render('gen_tok', :'hello', true), 24) = :'plain' AS raw_ignores_it;
SET ROLE gen_reader;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = :'with_sys' AS reader_sees_it;
SELECT sft_model_set_system('gen_m', 'I am mallory''s model.');
RESET ROLE;
SELECT sft_model_set_system('gen_m', '');
SELECT sft_model_set_system('gen_nope', 'x');
SELECT sft_model_set_system(NULL, 'x');
SELECT sft_model_set_system('gen_m', NULL);
SELECT system_prompt IS NULL AS removed FROM sft_models WHERE name = 'gen_m';
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = :'plain' AS back_to_template_default;

-- ---------------------------------------------------------------------------
-- sft_generate_batch: many conversations in one call, decoded together; each
-- reply is exactly sft_generate's for that conversation (seed + ordinality - 1).
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE gen_prompts (id int, messages jsonb);
INSERT INTO gen_prompts VALUES
  (1, :'hello'), (2, :'sys_hello'), (3, :'own_sys'),
  (4, '[{"role": "user", "content": "What is the capital of France? Answer in one word, please."}]'),
  (5, '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Tell me more."}]');
SELECT b.ordinality, b.reply = sft_generate('gen_m', p.messages, 24) AS same_as_alone
  FROM sft_generate_batch('gen_m', ARRAY(SELECT messages FROM gen_prompts ORDER BY id), 24) b
  JOIN gen_prompts p ON p.id = b.ordinality ORDER BY 1;
-- sampling: prompt i uses seed + i - 1, exactly as alone
SELECT bool_and(b.reply = sft_generate('gen_m', p.messages, 24, temperature => 0.9, top_p => 0.9, seed => 41 + p.id))
       AS sampled_same_as_alone, count(DISTINCT b.reply) > 1 AS replies_differ
  FROM sft_generate_batch('gen_m', ARRAY(SELECT messages FROM gen_prompts ORDER BY id), 24,
                          temperature => 0.9, top_p => 0.9, seed => 42) b
  JOIN gen_prompts p ON p.id = b.ordinality;
-- stop strings and max_new_tokens per sequence; one sequence at a time when memory is short
SELECT bool_and(b.reply = sft_generate('gen_m', p.messages, 7, stop => ARRAY['e', 'o'])) AS stop_same_as_alone
  FROM sft_generate_batch('gen_m', ARRAY(SELECT messages FROM gen_prompts ORDER BY id), 7, stop => ARRAY['e', 'o']) b
  JOIN gen_prompts p ON p.id = b.ordinality;
SET sft.generate_batch_memory = '1MB';
SELECT bool_and(b.reply = sft_generate('gen_m', p.messages, 24)) AS one_at_a_time_same
  FROM sft_generate_batch('gen_m', ARRAY(SELECT messages FROM gen_prompts ORDER BY id), 24) b
  JOIN gen_prompts p ON p.id = b.ordinality;
RESET sft.generate_batch_memory;
SET sft.generate_dtype = 'q8_0';
SELECT bool_and(b.reply = sft_generate('gen_m', p.messages, 24)) AS q8_batch_same_as_alone
  FROM sft_generate_batch('gen_m', ARRAY(SELECT messages FROM gen_prompts ORDER BY id), 24) b
  JOIN gen_prompts p ON p.id = b.ordinality;
RESET sft.generate_dtype;
-- the same prompt many times: 40 sequences in one call, one reply each
SELECT count(*) AS rows, count(DISTINCT reply) AS distinct_greedy_replies
  FROM sft_generate_batch('gen_m', array_fill(:'hello'::jsonb, ARRAY[40]), 8);
-- bad input
SELECT count(*) AS no_prompts_no_rows FROM sft_generate_batch('gen_m', '{}'::jsonb[], 8);
SELECT * FROM sft_generate_batch('gen_m', ARRAY[:'hello'::jsonb, NULL], 8);
SELECT * FROM sft_generate_batch('gen_m', ARRAY[[:'hello'::jsonb], [:'hello'::jsonb]], 8);
SELECT * FROM sft_generate_batch('gen_m', ARRAY['[{"role": "assistant", "content": "x"}]'::jsonb], 8);
SELECT * FROM sft_generate_batch('gen_m', NULL::jsonb[], 8);
SELECT * FROM sft_generate_batch('gen_nope', ARRAY[:'hello'::jsonb], 8);
SELECT * FROM sft_generate_batch('gen_m', ARRAY[:'hello'::jsonb], 0);

-- ---------------------------------------------------------------------------
-- Reduced-precision decode weights (sft.generate_dtype): a bf16 or q8_0 copy
-- of every matrix, made once per cached model and counted in its bytes; the
-- replies are deterministic and the stream agrees; f32 is back on RESET.
-- ---------------------------------------------------------------------------
SHOW sft.generate_dtype;
SELECT sft_model_cache_clear() >= 1 AS reloaded_without_copies;
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = :'plain' AS f32_reply;
SELECT model_bytes AS f32_bytes, parameters FROM sft_model_cache() WHERE model = 'gen_m' \gset
SET sft.generate_dtype = 'q8_0';
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) AS q8 \gset
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = :'q8' AS q8_repeats,
       (SELECT string_agg(piece, '') FROM sft_generate_stream('gen_m', :'hello'::jsonb, 24) AS t(piece)) = :'q8'
       AS q8_stream_agrees,
       length(:'q8') > 0 AS q8_not_empty;
-- the copy holds every matrix at 34 bytes per 32 weights (norms stay f32 in the model)
SELECT model_bytes - :f32_bytes BETWEEN :parameters * 34 / 32 - 2000 AND :parameters * 34 / 32 + 8000
       AS q8_copy_counted
  FROM sft_model_cache() WHERE model = 'gen_m';
SET sft.generate_dtype = 'bf16';
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) AS bf16 \gset
SELECT sft_generate('gen_m', :'hello'::jsonb, 24) = :'bf16' AS bf16_repeats;
SELECT model_bytes - :f32_bytes BETWEEN :parameters * 34 / 32 + :parameters * 2 - 4000
                                    AND :parameters * 34 / 32 + :parameters * 2 + 16000 AS both_copies_counted
  FROM sft_model_cache() WHERE model = 'gen_m';
-- the evaluation functions stay f32 whatever the setting
SELECT sft_loss('gen_m', sft_from_pair('Hi', 'Hello there.')) AS loss_bf16 \gset
RESET sft.generate_dtype;
SELECT sft_loss('gen_m', sft_from_pair('Hi', 'Hello there.')) = :loss_bf16 AS loss_is_f32,
       sft_generate('gen_m', :'hello'::jsonb, 24) = :'plain' AS f32_again;
SET sft.generate_dtype = 'q4_0';
-- q8_0 needs rows that are a multiple of 32 long
SET client_min_messages = warning;
SELECT sft_model_create('gen_odd', 'gen_tok', jsonb_set(:'cfg'::jsonb, '{hidden_size}', '48'), 3) > 0 AS created;
RESET client_min_messages;
SET sft.generate_dtype = 'q8_0';
SELECT sft_generate('gen_odd', :'hello'::jsonb, 4);
SET sft.generate_dtype = 'bf16';
SELECT length(sft_generate('gen_odd', :'hello'::jsonb, 4)) >= 0 AS bf16_takes_it;
RESET sft.generate_dtype;

SET client_min_messages = warning;
SELECT sft_model_drop(name) FROM sft_models WHERE name IN ('gen_m', 'gen_plain', 'gen_big', 'gen_a', 'gen_b', 'gen_odd') ORDER BY name;
DROP ROLE gen_reader;
SELECT sft_tokenizer_drop('gen_tok');
SELECT sft_tokenizer_drop('gen_tok_plain');
