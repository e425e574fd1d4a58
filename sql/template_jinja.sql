-- Jinja chat templates: a model's own template, or Jinja source given to
-- sft_tokenizer_set_template, rendered by the engine as transformers does.
SET client_min_messages = notice;
\set bpe `cat test/fixtures/tiny_bpe.json`
\set two '[{"role":"system","content":"Be nice."},{"role":"user","content":"Hi there"},{"role":"assistant","content":" Hello! "},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]'
\set prompt '[{"role":"user","content":"Hi <|im_end|> there"}]'
SELECT tokenizer, chat_template FROM sft_tokenizer_load('j_bpe', :'bpe');

-- Jinja source instead of a name (Phi-3's shape, with a BOS written by the template)
SELECT sft_tokenizer_set_template('j_bpe', $$
{{- '<|begin_of_text|>' }}{% for message in messages %}<|im_start|>{{ message['role'] }}
{{ message['content'] | trim }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}$$);
SELECT chat_template, end_of_turn_token, chat_template_source IS NOT NULL AS has_source
  FROM sft_tokenizers WHERE name = 'j_bpe';
SELECT sft_render('j_bpe', :'two');
SELECT sft_render('j_bpe', :'prompt', true);
-- the template's BOS once; <|im_end|> typed by the user stays text (one <|im_end|> id, not two)
SELECT e.input_ids[1] = (sft_tokenize('j_bpe', '<|begin_of_text|>', split_special => true))[1] AS bos_first,
       (SELECT count(*) FROM unnest(e.input_ids) i
         WHERE i = (sft_tokenize('j_bpe', '<|begin_of_text|>', split_special => true))[1]) AS bos_ids,
       (SELECT count(*) FROM unnest(e.input_ids) i
         WHERE i = (sft_tokenize('j_bpe', '<|im_end|>', split_special => true))[1]) AS im_end_ids
  FROM sft_encode('j_bpe', :'prompt' || '[{"role":"assistant","content":"ok"}]'::jsonb) e;
-- the mask: each reply (trimmed, as rendered) and its <|im_end|>; headers and the newline after are 0
SELECT sft_detokenize('j_bpe', ARRAY(SELECT t FROM unnest(input_ids, loss_mask) AS u(t, m) WHERE m = 1)) AS trained
  FROM sft_encode('j_bpe', :'two');
SELECT sft_detokenize('j_bpe', ARRAY(SELECT t FROM unnest(input_ids, loss_mask) AS u(t, m) WHERE m = 1)) AS trained
  FROM sft_encode('j_bpe', :'two', train_on => 'last_assistant');
-- a reply marked "weight": 0 is not trained
SELECT sft_detokenize('j_bpe', ARRAY(SELECT t FROM unnest(input_ids, loss_mask) AS u(t, m) WHERE m = 1)) AS trained
  FROM sft_encode('j_bpe', jsonb_set(:'two'::jsonb, '{2,weight}', '0'));
SELECT sft_token_count('j_bpe', :'two'::jsonb) = cardinality((sft_encode('j_bpe', :'two')).input_ids) AS count_agrees;
SELECT sft_chat_template_jinja('j_bpe') = chat_template_source AS exported_verbatim
  FROM sft_tokenizers WHERE name = 'j_bpe';

-- template_kwargs are template variables; messages cannot be replaced
SELECT sft_tokenizer_set_template('j_bpe',
  '{{ greeting | default("hello") }}{% if enable_thinking is defined and not enable_thinking %} /no_think{% endif %}: {{ messages[0].content }}');
SELECT sft_render('j_bpe', :'two');
SELECT sft_render('j_bpe', :'two', template_kwargs => '{"greeting": "hey", "enable_thinking": false}');
SELECT sft_token_count('j_bpe', :'two', '{"greeting": "a much longer greeting"}') > sft_token_count('j_bpe', :'two'::jsonb);
SELECT sft_render('j_bpe', :'two', template_kwargs => '{"messages": []}');
SELECT sft_render('j_bpe', :'two', template_kwargs => '[1]');

-- strftime_now reads sft.template_now when set
SELECT sft_tokenizer_set_template('j_bpe', '{{ strftime_now("%d %B %Y") }}|{{ messages | length }}');
SET sft.template_now = '2025-07-01 12:00:00+00';
SET TimeZone = 'UTC';
SELECT sft_render('j_bpe', :'two');
RESET sft.template_now;
SELECT sft_render('j_bpe', :'two') <> '01 July 2025|5' AS server_clock;

-- {% generation %} blocks are the mask
SELECT sft_tokenizer_set_template('j_bpe', $$
{%- for m in messages %}<|im_start|>{{ m.role }}
{% if m.role == 'assistant' %}{% generation %}{{ m.content | upper }}<|im_end|>{% endgeneration %}
{% else %}{{ m.content }}<|im_end|>
{% endif %}{% endfor %}$$);
SELECT sft_detokenize('j_bpe', ARRAY(SELECT t FROM unnest(input_ids, loss_mask) AS u(t, m) WHERE m = 1)) AS trained
  FROM sft_encode('j_bpe', :'two');
SELECT sft_detokenize('j_bpe', ARRAY(SELECT t FROM unnest(input_ids, loss_mask) AS u(t, m) WHERE m = 1)) AS trained
  FROM sft_encode('j_bpe', jsonb_set(:'two'::jsonb, '{2,weight}', '0'));

-- a template that rewrites the reply without generation blocks cannot be masked
SELECT sft_tokenizer_set_template('j_bpe', '{% for m in messages %}{{ m.content | upper }}<|im_end|>{% endfor %}');
SELECT sft_render('j_bpe', :'two');
SELECT * FROM sft_encode('j_bpe', :'two');

-- errors a template raises arrive with its message
SELECT sft_tokenizer_set_template('j_bpe',
  '{% if messages[0].role == "system" %}{{ raise_exception("System role not supported") }}{% endif %}ok');
SELECT sft_render('j_bpe', :'two');
SELECT sft_render('j_bpe', :'prompt');

-- refused up front: syntax errors and what the engine does not implement, with the line
SELECT sft_tokenizer_set_template('j_bpe', E'line one\n{% for m in messages %}{{ m.content }');
SELECT sft_tokenizer_set_template('j_bpe', E'{{ x | nosuch }}');
SELECT sft_tokenizer_set_template('j_bpe', E'\n\n{{ x | truncate(5) }}');
SELECT sft_tokenizer_set_template('j_bpe', '{% include "other.jinja" %}');
SELECT sft_tokenizer_set_template('j_bpe', '{{ messages }}', 'a default prompt');
SELECT sft_tokenizer_set_template('j_bpe', 'chatmll');
SELECT chat_template FROM sft_tokenizers WHERE name = 'j_bpe';

-- a hostile template is bounded
SELECT sft_tokenizer_set_template('j_bpe', '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}');
SELECT sft_render('j_bpe', :'two');
SELECT sft_tokenizer_set_template('j_bpe', '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}');
SELECT sft_render('j_bpe', :'two');

-- back to a built-in name
SELECT sft_tokenizer_set_template('j_bpe', 'chatml');
SELECT chat_template, chat_template_source, end_of_turn_token FROM sft_tokenizers WHERE name = 'j_bpe';
SELECT sft_tokenizer_drop('j_bpe');
