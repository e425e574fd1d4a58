-- Chat templates: detection at load, choosing one by name, default system
-- prompts, sft_render and sft_token_count over conversations.
\set bpe `cat test/fixtures/tiny_bpe.json`
\set sp `cat test/fixtures/tiny_sp.json`
\set cfg_chatml `cat test/fixtures/tiny_config_chatml.json`
\set cfg_llama3 `cat test/fixtures/tiny_config_llama3.json`
\set cfg_llama2 `cat test/fixtures/tiny_config_llama2.json`
\set cfg_other `cat test/fixtures/tiny_config_other.json`
\set qwen `cat test/fixtures/tiny_qwen3.json`
\set two '[{"role":"system","content":"Be nice."},{"role":"user","content":"Hi there"},{"role":"assistant","content":" Hello! "},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]'
\set prompt '[{"role":"user","content":"Hi there"}]'

-- detection from tokenizer_config.json
SELECT * FROM sft_tokenizer_load('t_chatml', :'bpe', :'cfg_chatml');
SELECT * FROM sft_tokenizer_load('t_llama3', :'bpe', :'cfg_llama3');
SELECT * FROM sft_tokenizer_load('t_llama2', :'sp', :'cfg_llama2');
SELECT * FROM sft_tokenizer_load('t_other', :'bpe', :'cfg_other');
-- a llama3 template on a tokenizer that lacks its tokens is not taken
SELECT * FROM sft_tokenizer_load('t_sp_llama3', :'sp', :'cfg_llama3');
SELECT name, chat_template, default_system, end_of_turn_token
  FROM sft_tokenizers WHERE name LIKE 't\_%' ORDER BY name;

-- rendering, one template each
SELECT sft_render('t_chatml', :'two');
SELECT sft_render('t_chatml', :'prompt', add_generation_prompt => true);
SELECT sft_render('t_llama3', :'two');
SELECT sft_render('t_llama3', :'prompt', true);
SELECT sft_render('t_llama2', :'two');
SELECT sft_render('t_llama2', :'prompt', true);
-- qwen3: chatml with think blocks; only the reply after the last query keeps one
SELECT tokenizer FROM sft_tokenizer_load('t_qwen3', :'qwen');
SELECT sft_tokenizer_set_template('t_qwen3', 'qwen3');
SELECT sft_render('t_qwen3', :'two');
SELECT sft_render('t_qwen3', '[{"role":"user","content":"Hi"},{"role":"assistant","content":"<think>\nplan A\n</think>\n\nHello!"},{"role":"user","content":"More?"},{"role":"assistant","content":"<think>\nplan B\n</think>\n\nSure."}]');
SELECT sft_render('t_qwen3', :'prompt', true);
SELECT sft_tokenizer_set_template('t_chatml', 'qwen3');
-- content parts are joined before rendering; roles are case-insensitive
SELECT sft_render('t_llama3', '[{"role":"User","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"c"}]');
-- special-token text in content is rendered as typed
SELECT sft_render('t_chatml', '[{"role":"user","content":"<|im_end|>"},{"role":"assistant","content":"ok"}]');

-- no template: a clear error with a hint
SELECT sft_render('t_other', :'prompt');
SELECT sft_token_count('t_other', :'prompt'::jsonb);
SELECT * FROM sft_encode('t_other', :'two');

-- choosing a template by name; unknown names list the valid ones
SELECT sft_tokenizer_set_template('t_other', 'llama3');
SELECT sft_render('t_other', :'prompt', true);
SELECT sft_tokenizer_set_template('t_other', 'chatml', 'You are a test.');
SELECT sft_render('t_other', :'prompt', true);
SELECT name, chat_template, default_system, end_of_turn_token FROM sft_tokenizers WHERE name = 't_other';
SELECT sft_tokenizer_set_template('t_other', 'jinja');
SELECT sft_tokenizer_set_template('t_other', '');
SELECT sft_tokenizer_set_template('t_other', 'ChatML');
SELECT sft_tokenizer_set_template('t_llama2', 'chatml');
SELECT sft_tokenizer_set_template('t_other', NULL, 'orphan prompt');
SELECT sft_tokenizer_set_template('nope', 'chatml');
SELECT sft_tokenizer_set_template(NULL, 'chatml');
-- the default system prompt can be changed and removed
SELECT sft_tokenizer_set_template('t_chatml', 'chatml', NULL);
SELECT sft_render('t_chatml', :'prompt');
SELECT sft_tokenizer_set_template('t_chatml', 'chatml', 'You are a tiny test assistant.');
SELECT sft_render('t_chatml', :'prompt');
-- a default system prompt goes where each template puts system prompts
SELECT sft_tokenizer_set_template('t_llama2', 'llama2', 'Be brief.');
SELECT sft_render('t_llama2', :'prompt');
SELECT sft_render('t_llama2', :'two');
SELECT sft_tokenizer_set_template('t_llama2', 'llama2');
-- no template at all
SELECT sft_tokenizer_set_template('t_other', NULL);
SELECT name, chat_template, default_system, end_of_turn_token FROM sft_tokenizers WHERE name = 't_other';
SELECT sft_render('t_other', :'prompt');

-- token counts: the rendered conversation as training sees it
SELECT sft_token_count('t_chatml', :'two'::jsonb) AS conversation,
       cardinality(input_ids) AS encoded,
       sft_token_count('t_chatml', sft_render('t_chatml', :'two')) AS plain_text_of_render
  FROM sft_encode('t_chatml', :'two');
SELECT sft_token_count('t_llama3', :'two'::jsonb), sft_token_count('t_llama2', :'two'::jsonb);
-- a prompt still awaiting its answer is counted too
SELECT sft_token_count('t_chatml', :'prompt'::jsonb);
-- in a WHERE clause
SELECT count(*) FROM (VALUES (:'two'::jsonb), (:'prompt'::jsonb)) AS v(m)
 WHERE sft_token_count('t_llama3', m) < 30;

-- conversation errors name the message
SELECT sft_render('t_chatml', '{"role":"user"}');
SELECT sft_render('t_chatml', '[]');
SELECT sft_render('t_chatml', '[{"role":"user","content":"a"},{"role":"user","content":"b"}]');
SELECT sft_render('t_chatml', '[{"role":"assistant","content":"a"}]');
SELECT sft_render('t_chatml', '[{"role":"robot","content":"a"}]');
SELECT sft_render('t_chatml', '[{"role":"user","content":42}]');
SELECT sft_token_count('t_chatml', '[{"role":"system","content":"only"}]'::jsonb);
-- llama2 takes one system message, as its reference template does
SELECT sft_render('t_llama2', '[{"role":"system","content":"a"},{"role":"system","content":"b"},{"role":"user","content":"c"}]');
SELECT sft_render('t_chatml', '[{"role":"system","content":"a"},{"role":"system","content":"b"},{"role":"user","content":"c"}]');

-- NULLs
SELECT sft_render(NULL, :'prompt') IS NULL, sft_render('t_chatml', NULL) IS NULL,
       sft_render('t_chatml', :'prompt', NULL) IS NULL,
       sft_token_count('t_chatml', NULL::jsonb) IS NULL;
-- 1 MB of content
SELECT sft_token_count('t_chatml', jsonb_build_array(
         jsonb_build_object('role', 'user', 'content', repeat('Hello world. ', 80000)),
         jsonb_build_object('role', 'assistant', 'content', repeat('Sure. ', 170000))));
SELECT length(sft_render('t_llama3', jsonb_build_array(
         jsonb_build_object('role', 'user', 'content', repeat('x', 1048576)))));

-- as Jinja, for exported tokenizer_config.json files: the imported template
-- when it still says the same, else our own form (default prompt included)
SELECT sft_chat_template_jinja('t_chatml') = config ->> 'chat_template' AS verbatim
  FROM sft_tokenizers WHERE name = 't_chatml';
SELECT sft_tokenizer_set_template('t_chatml', 'chatml', E'It''s a\nnew prompt');
SELECT sft_chat_template_jinja('t_chatml');
SELECT sft_tokenizer_set_template('t_llama2', 'llama2', 'Be brief.');
SELECT sft_chat_template_jinja('t_llama2');
SELECT sft_tokenizer_set_template('t_llama2', 'llama2');
SELECT sft_chat_template_jinja('t_llama3');
SELECT sft_chat_template_jinja('t_qwen3');
SELECT sft_chat_template_jinja('t_other');
SELECT sft_chat_template_jinja('nope');

-- PARALLEL SAFE: parallel workers load the tokenizer themselves and agree
CREATE TABLE par_conversations AS
SELECT i, jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'Hello ' || i),
                            jsonb_build_object('role', 'assistant', 'content', 'The sea ' || i)) AS m
  FROM generate_series(1, 2000) i;
ANALYZE par_conversations;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(sft_token_count('t_llama3', m)) FROM par_conversations;
CREATE TEMP TABLE par_result AS
SELECT sum(sft_token_count('t_llama3', m)) AS n, sum(cardinality((sft_encode('t_llama3', m)).input_ids)) AS e
  FROM par_conversations;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
SET max_parallel_workers_per_gather = 0;
SELECT p.n = s.n AND p.e = s.n AS parallel_agrees
  FROM par_result p, (SELECT sum(sft_token_count('t_llama3', m)) AS n FROM par_conversations) s;
RESET max_parallel_workers_per_gather;
DROP TABLE par_conversations;

SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 't\_%' ORDER BY name;
