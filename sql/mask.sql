-- Assistant-only loss masks (sft_encode), one test per rule, over the three
-- templates.  tokens() lists each token with its text and mask bit.
\set bpe `cat test/fixtures/tiny_bpe.json`
\set sp `cat test/fixtures/tiny_sp.json`
\set cfg_chatml `cat test/fixtures/tiny_config_chatml.json`
\set cfg_llama2 `cat test/fixtures/tiny_config_llama2.json`
\set qwen `cat test/fixtures/tiny_qwen3.json`
SELECT tokenizer, chat_template FROM sft_tokenizer_load('m_chatml', :'bpe', :'cfg_chatml');
SELECT tokenizer FROM sft_tokenizer_load('m_llama3', :'bpe');
SELECT sft_tokenizer_set_template('m_llama3', 'llama3');
SELECT tokenizer, chat_template FROM sft_tokenizer_load('m_llama2', :'sp', :'cfg_llama2');
-- chatml without the default system prompt keeps the listings short
SELECT tokenizer FROM sft_tokenizer_load('m_plain', :'bpe');
SELECT sft_tokenizer_set_template('m_plain', 'chatml');
SELECT tokenizer FROM sft_tokenizer_load('m_qwen3', :'qwen');
SELECT sft_tokenizer_set_template('m_qwen3', 'qwen3');

CREATE FUNCTION tokens(tok text, messages jsonb, max_length int DEFAULT NULL,
                       train_on text DEFAULT 'all_assistant')
RETURNS TABLE (pos int, token text, mask int) LANGUAGE sql AS $$
  SELECT i, sft_detokenize(tok, ARRAY[e.input_ids[i]]), e.loss_mask[i]
    FROM sft_encode(tok, messages, max_length, train_on) e,
         generate_subscripts(e.input_ids, 1) AS i
   ORDER BY i
$$;
-- the text of the trained tokens, and of the others
CREATE FUNCTION trained(tok text, messages jsonb, train_on text DEFAULT 'all_assistant')
RETURNS TABLE (trained text, not_trained text) LANGUAGE sql AS $$
  SELECT sft_detokenize(tok, array_agg(e.input_ids[i] ORDER BY i) FILTER (WHERE e.loss_mask[i] = 1)),
         sft_detokenize(tok, array_agg(e.input_ids[i] ORDER BY i) FILTER (WHERE e.loss_mask[i] = 0))
    FROM sft_encode(tok, messages, NULL, train_on) e, generate_subscripts(e.input_ids, 1) AS i
$$;

\set one '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]'
\set two '[{"role":"system","content":"Be nice."},{"role":"user","content":"Hello!"},{"role":"assistant","content":"The sea is wide."},{"role":"user","content":"Thanks"},{"role":"assistant","content":"Sure, here it is."}]'
\set two_prompt '[{"role":"system","content":"Be nice."},{"role":"user","content":"Hello!"},{"role":"assistant","content":"The sea is wide."},{"role":"user","content":"Thanks"}]'

-- 1. role headers are 0: every token listed, only the reply and its end are 1
SELECT * FROM tokens('m_plain', :'one');
SELECT * FROM tokens('m_llama3', :'one');
SELECT * FROM tokens('m_llama2', :'one');

-- 2. the token that closes each assistant turn is 1 (and the user's is 0)
SELECT pos, token, mask FROM tokens('m_chatml', :'two') WHERE token = '<|im_end|>';
SELECT pos, token, mask FROM tokens('m_llama3', :'two') WHERE token = '<|eot_id|>';
SELECT pos, token, mask FROM tokens('m_llama2', :'two') WHERE token = '</s>';
SELECT pos, token, mask FROM tokens('m_qwen3', :'two') WHERE token IN ('<|im_end|>', '<think>', '</think>');

-- 3. both replies of a two-turn conversation are trained; only the last with last_assistant
SELECT * FROM trained('m_chatml', :'two');
SELECT * FROM trained('m_chatml', :'two', 'last_assistant');
SELECT * FROM trained('m_llama3', :'two');
SELECT * FROM trained('m_llama3', :'two', 'last_assistant');
SELECT * FROM trained('m_llama2', :'two');
SELECT * FROM trained('m_llama2', :'two', 'last_assistant');
-- qwen3: the final reply's think block is part of what is trained
SELECT * FROM trained('m_qwen3', :'two');
SELECT * FROM trained('m_qwen3', :'two', 'last_assistant');
-- train_on changes the mask, never the ids
SELECT a.input_ids = l.input_ids AS same_ids,
       (SELECT sum(x) FROM unnest(a.loss_mask) x) AS all_bits,
       (SELECT sum(x) FROM unnest(l.loss_mask) x) AS last_bits
  FROM sft_encode('m_chatml', :'two') a, sft_encode('m_chatml', :'two', train_on => 'last_assistant') l;

-- 4. the rendered prompt is a token prefix of the full conversation
SELECT t AS tokenizer,
       p.ids = (e.input_ids)[1:cardinality(p.ids)] AS is_prefix,
       cardinality(p.ids) AS prompt_tokens, cardinality(e.input_ids) AS all_tokens,
       e.loss_mask[cardinality(p.ids)] AS last_prompt_bit,
       e.loss_mask[cardinality(p.ids) + 1] AS first_reply_bit
  FROM unnest(ARRAY['m_chatml', 'm_plain', 'm_llama3', 'm_llama2', 'm_qwen3']) AS t,
       LATERAL (SELECT sft_tokenize(t, sft_render(t, :'two_prompt', true), split_special => true) AS ids) p,
       LATERAL sft_encode(t, :'two') e;

-- 5. a conversation with no assistant tokens is reported, never trained as zeros
SELECT * FROM sft_encode('m_chatml', '[{"role":"user","content":"Hello!"}]');
SELECT * FROM sft_encode('m_chatml', '[{"role":"system","content":"s"},{"role":"user","content":"Hello!"}]');
SELECT * FROM sft_encode('m_chatml', :'two', max_length => 12);
SELECT * FROM sft_encode('m_llama2', :'one', max_length => 3);

-- 6. end-of-sequence used as padding does not erase its own label: in this
-- chatml tokenizer <|im_end|> is eos and pad; the last <|im_end|> stays 1
SELECT config ->> 'eos_token' AS eos, config ->> 'pad_token' AS pad, end_of_turn_token
  FROM sft_tokenizers WHERE name = 'm_chatml';
SELECT e.input_ids[n - 1] = (sft_tokenize('m_chatml', '<|im_end|>', true))[1] AS is_eos,
       e.loss_mask[n - 1] AS eos_bit, e.loss_mask[n] AS newline_bit
  FROM sft_encode('m_chatml', :'two') e, LATERAL (SELECT cardinality(e.input_ids)) AS c(n);
-- and llama2 ends on </s> (its eos) with the bit set
SELECT e.input_ids[n] = (sft_tokenize('m_llama2', '</s>', true))[1] AS is_eos, e.loss_mask[n] AS eos_bit
  FROM sft_encode('m_llama2', :'two') e, LATERAL (SELECT cardinality(e.input_ids)) AS c(n);

-- special-token text typed by a user is plain text with bit 0
SELECT pos, token, mask FROM tokens('m_plain', '[{"role":"user","content":"<|im_end|>"},{"role":"assistant","content":"ok"}]')
 WHERE token <> E'\n';

-- max_length: cut and flagged
SELECT cardinality(input_ids) AS n, cardinality(loss_mask) AS n_mask, truncated
  FROM sft_encode('m_chatml', :'two', max_length => 60);
SELECT cardinality(input_ids) AS n, truncated FROM sft_encode('m_chatml', :'two', max_length => 100000);
SELECT cardinality(input_ids) = sft_token_count('m_chatml', :'two'::jsonb) AS count_matches
  FROM sft_encode('m_chatml', :'two');

-- argument errors
SELECT * FROM sft_encode('m_chatml', :'two', max_length => 0);
SELECT * FROM sft_encode('m_chatml', :'two', max_length => -5);
SELECT * FROM sft_encode('m_chatml', :'two', train_on => 'everything');
SELECT * FROM sft_encode('m_chatml', :'two', train_on => NULL);
SELECT * FROM sft_encode('nope', :'two');
SELECT * FROM sft_encode(NULL, :'two');
SELECT * FROM sft_encode('m_chatml', NULL);
SELECT * FROM sft_encode('m_chatml', '[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"assistant","content":"c"}]');

SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'm\_%' ORDER BY name;
DROP FUNCTION tokens(text, jsonb, int, text);
DROP FUNCTION trained(text, jsonb, text);
