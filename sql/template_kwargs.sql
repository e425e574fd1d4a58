-- template_kwargs and sft.template_now reach every function that renders a
-- chat template: sft_render / sft_encode / sft_token_count, generation
-- (sft_generate, its text form, sft_generate_stream, sft_generate_batch),
-- scoring (sft_loss, sft_eval) and training runs, which record both so a
-- resumed run renders its data the same.  The template refuses to render
-- without custom_var and checks the clock against date_check, so each path
-- fails unless both arrived.
SET client_min_messages = warning;
SET sft.threads = 1;
SET TimeZone = 'UTC';
\set bpe `cat test/fixtures/tiny_bpe.json`
SELECT tokenizer FROM sft_tokenizer_load('tk_tok', :'bpe');
SELECT sft_tokenizer_set_template('tk_tok', $$
{%- if custom_var is not defined %}{{ raise_exception("custom_var is missing") }}{% endif %}
{%- if date_check is defined and strftime_now("%Y-%m-%d") != date_check %}{{ raise_exception("the clock reads " ~ strftime_now("%Y-%m-%d")) }}{% endif -%}
<|im_start|>system
{{ custom_var }} Today is {{ strftime_now("%d %B %Y") }}.<|im_end|>
{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and not enable_thinking %}<think>

</think>

{% endif %}{% endif %}$$);
\set q '[{"role":"user","content":"Hi there"}]'
\set qa '[{"role":"user","content":"Hi there"},{"role":"assistant","content":"Hello you"}]'
\set kw '{"custom_var": "Be brief.", "enable_thinking": false}'
SET sft.template_now = '2025-07-01 12:00:00+00';

-- the text functions
SELECT sft_render('tk_tok', :'q', true, :'kw');
SELECT sft_render('tk_tok', :'q', true);
SELECT sft_token_count('tk_tok', :'qa', :'kw') = cardinality((sft_encode('tk_tok', :'qa', template_kwargs => :'kw')).input_ids) AS count_agrees;
SELECT sft_detokenize('tk_tok', ARRAY(SELECT t FROM unnest(input_ids, loss_mask) AS u(t, m) WHERE m = 1)) AS trained
  FROM sft_encode('tk_tok', :'qa', template_kwargs => :'kw');
SELECT sft_detokenize('tk_tok', input_ids) AS encoded FROM sft_encode('tk_tok', :'qa', template_kwargs => :'kw');

-- sft.template_now is checked when set
SET sft.template_now = 'not a time';
SET sft.template_now = 'infinity';
RESET sft.template_now;
SELECT sft_render('tk_tok', :'q', true, '{"custom_var": "x"}')
       LIKE '%Today is ' || to_char(now(), 'DD FMMonth YYYY') || '.%' AS server_clock;
SET sft.template_now = '2025-07-01 12:00:00+00';

-- generation: the prompt is the rendering with the generation prompt, kwargs and clock included
SELECT sft_model_create('tk_m', 'tk_tok', '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 256}', 3) > 0 AS created;
CREATE TEMP TABLE tk_expected AS
  SELECT sft_detokenize('tk_tok', sft_generate_tokens('tk_m',
           sft_tokenize('tk_tok', sft_render('tk_tok', :'q', true, :'kw'), split_special => true),
           max_new_tokens => 12)) AS reply;
SELECT sft_generate('tk_m', :'q'::jsonb, max_new_tokens => 12, template_kwargs => :'kw') = reply AS generate_same
  FROM tk_expected;
SELECT sft_generate('tk_m', 'Hi there', max_new_tokens => 12, template_kwargs => :'kw') = reply AS text_form_same
  FROM tk_expected;
SELECT string_agg(piece, '') = (SELECT reply FROM tk_expected) AS stream_same
  FROM sft_generate_stream('tk_m', :'q'::jsonb, max_new_tokens => 12, template_kwargs => :'kw') AS piece;
SELECT ordinality, reply = (SELECT reply FROM tk_expected) AS batch_same
  FROM sft_generate_batch('tk_m', ARRAY[:'q'::jsonb, :'q'::jsonb], max_new_tokens => 12, template_kwargs => :'kw');
-- the kwargs change the prompt: with another custom_var the prompt ids differ
SELECT sft_tokenize('tk_tok', sft_render('tk_tok', :'q', true, '{"custom_var": "Be long."}'), split_special => true)
    <> sft_tokenize('tk_tok', sft_render('tk_tok', :'q', true, :'kw'), split_special => true) AS prompts_differ;
-- missing, malformed or forbidden kwargs: errors before any decoding
SELECT sft_generate('tk_m', :'q'::jsonb, max_new_tokens => 4);
SELECT sft_generate('tk_m', 'Hi there', max_new_tokens => 4);
SELECT * FROM sft_generate_stream('tk_m', :'q'::jsonb, max_new_tokens => 4);
SELECT * FROM sft_generate_batch('tk_m', ARRAY[:'q'::jsonb], max_new_tokens => 4);
SELECT sft_generate('tk_m', :'q'::jsonb, template_kwargs => '[1]');
SELECT * FROM sft_generate_batch('tk_m', ARRAY[:'q'::jsonb], template_kwargs => '{"messages": []}');
SELECT sft_generate('tk_m', :'q'::jsonb, template_kwargs => '{"add_generation_prompt": false}');
-- the clock reaches generation too
SELECT sft_generate('tk_m', :'q'::jsonb, max_new_tokens => 4,
                    template_kwargs => '{"custom_var": "x", "date_check": "2025-07-02"}');

-- scoring renders as training does
SELECT sft_loss('tk_m', :'qa', template_kwargs => :'kw') > 0 AS scored;
SELECT sft_loss('tk_m', :'qa', template_kwargs => :'kw') <> sft_loss('tk_m', :'qa', template_kwargs => '{"custom_var": "A different system line."}') AS kwargs_change_loss;
SELECT sft_loss('tk_m', :'qa');
SELECT sft_loss('tk_m', :'qa', 'all_assistant', '"x"');
SELECT sft_loss(NULL, :'qa', template_kwargs => :'kw') IS NULL AS null_model;
CREATE TABLE tk_data AS SELECT n, :'qa'::jsonb AS messages FROM generate_series(1, 16) n;
SELECT rows, tokens > 0 AS scored, abs(loss - sft_loss('tk_m', :'qa', template_kwargs => :'kw')) < 1e-5 AS same_as_sft_loss
  FROM sft_eval('tk_m', 'tk_data', 128, template_kwargs => :'kw');
SELECT * FROM sft_eval('tk_m', 'tk_data', 128);
SELECT * FROM sft_eval('tk_m', 'tk_data', 128, template_kwargs => '{"messages": 1}');

-- training: the options carry both; the run records the clock it used
SELECT sft_train('tk_data', 'tk_m', 'tk_out', epochs => 1, max_length => 128, batch_size => 4,
                 options => '{"template_kwargs": {"custom_var": "Be brief.", "date_check": "2025-07-01"}}') AS run \gset
SELECT sft_wait(:run);
SELECT status, error, rows_used, options -> 'template_kwargs' AS kwargs, options ->> 'template_now' AS clock
  FROM sft_runs WHERE id = :run;
-- the trained model's loss on its data, with the same rendering, fell
SELECT sft_loss('tk_out', :'qa', template_kwargs => '{"custom_var": "Be brief."}')
     < sft_loss('tk_m', :'qa', template_kwargs => '{"custom_var": "Be brief."}') AS learned;
-- the option wins over the session's setting; without kwargs the template's error is the run's
SELECT sft_train('tk_data', 'tk_m', 'tk_out2', epochs => 1, max_length => 128, batch_size => 4,
                 options => '{"template_now": "2024-02-29 23:00:00-02", "template_kwargs": {"custom_var": "x", "date_check": "2024-03-01"}}') AS run \gset
SELECT sft_wait(:run);
SELECT status, error, options ->> 'template_now' AS clock FROM sft_runs WHERE id = :run;
SELECT sft_train('tk_data', 'tk_m', 'tk_out3', epochs => 1, max_length => 128, batch_size => 4) AS run \gset
SELECT sft_wait(:run);
SELECT status, error, options -> 'template_kwargs' AS kwargs FROM sft_runs WHERE id = :run;
SELECT sft_run_drop(:run);
-- unpinned, a run pins the time it was started: the template sees that day, not 2025-07-01
RESET sft.template_now;
SELECT sft_train('tk_data', 'tk_m', 'tk_out4', epochs => 1, max_length => 128, batch_size => 4,
                 options => '{"template_kwargs": {"custom_var": "x", "date_check": "2025-07-01"}}') AS run \gset
SELECT sft_wait(:run);
SELECT status, error LIKE '%: the clock reads ' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS error_is_today,
       abs(extract(epoch FROM (options ->> 'template_now')::timestamptz - now())) < 600 AS pinned_now
  FROM sft_runs WHERE id = :run;
-- resuming renders with the recorded clock and kwargs, whatever the session says now
-- (the recorded clock is moved to the day the template wants, as a superuser may)
SET sft.template_now = '1999-12-31 00:00:00+00';
UPDATE sft_run_table SET options = jsonb_set(options, '{template_now}', '"2025-07-01 06:00:00+00"') WHERE id = :run;
SELECT sft_resume(:run) = :run AS resumed;
SELECT sft_wait(:run);
SELECT status, error, attempts FROM sft_runs WHERE id = :run;
RESET sft.template_now;
-- bad options are refused before a run starts
SELECT sft_train('tk_data', 'tk_m', 'tk_bad', options => '{"template_kwargs": [1]}');
SELECT sft_train('tk_data', 'tk_m', 'tk_bad', options => '{"template_kwargs": "x"}');
SELECT sft_train('tk_data', 'tk_m', 'tk_bad', options => '{"template_kwargs": {"messages": []}}');
SELECT sft_train('tk_data', 'tk_m', 'tk_bad', options => '{"template_now": "soon"}');
SELECT sft_train('tk_data', 'tk_m', 'tk_bad', options => '{"template_now": 5}');
SELECT sft_train('tk_data', 'tk_m', 'tk_bad', options => '{"template_now": "-infinity"}');

-- a built-in template (the fast path) cannot read kwargs: the imported source renders them;
-- qwen3 chosen by name has no source, so kwargs are refused rather than ignored
\set qwen `cat test/fixtures/tiny_qwen3.json`
SELECT tokenizer FROM sft_tokenizer_load('tk_qwen3', :'qwen');
SELECT sft_tokenizer_set_template('tk_qwen3', 'qwen3');
SELECT sft_render('tk_qwen3', :'q', true, '{}');
SELECT sft_render('tk_qwen3', :'q', true, '{"enable_thinking": false}');
-- so does the training option "template": "qwen3" (here over a tokenizer whose own template is chatml)
SELECT sft_tokenizer_set_template('tk_qwen3', 'chatml');
SELECT sft_model_create('tk_mq', 'tk_qwen3', jsonb_build_object('hidden_size', 32, 'num_hidden_layers', 1,
         'num_attention_heads', 4, 'num_key_value_heads', 2, 'intermediate_size', 64, 'max_position_embeddings', 256,
         'vocab_size', (SELECT vocab_size FROM sft_tokenizers WHERE name = 'tk_qwen3')), 1) > 0 AS created;
SELECT sft_train('tk_data', 'tk_mq', 'tk_q3', epochs => 1, max_length => 128,
                 options => '{"template": "qwen3", "template_kwargs": {"enable_thinking": false}}') AS run \gset
SELECT sft_wait(:run);
SELECT status, error FROM sft_runs WHERE id = :run;
SELECT sft_run_drop(:run);
\set cfg_chatml `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer, chat_template FROM sft_tokenizer_load('tk_chatml', :'bpe', :'cfg_chatml');
SELECT sft_render('tk_chatml', :'q', true, '{"enable_thinking": false}') = sft_render('tk_chatml', :'q', true) AS same;

SELECT sft_model_drop(name) FROM sft_models WHERE name LIKE 'tk\_%' ORDER BY name;
SELECT bool_and(sft_run_drop(id)) FROM sft_run_table WHERE output LIKE 'tk\_%';
DROP TABLE tk_data;
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'tk\_%' ORDER BY name;
