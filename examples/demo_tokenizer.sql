-- The demo's tokenizer, built by the project itself: byte-level, one token per
-- byte (ids 0-255, in GPT-2's printable byte alphabet so that it is an
-- ordinary Hugging Face tokenizer.json with no merges) plus the three special
-- tokens of the chatml template.  One token per character suits the skills
-- the demo teaches (spelling, reversing, counting letters): the model sees
-- every letter.
CREATE TEMP VIEW byte_alphabet AS
  -- GPT-2's byte -> character map: printable bytes stand for themselves, the
  -- others (controls, space, ...) are shifted to U+0100 and up, in byte order.
  SELECT b, CASE WHEN printable THEN chr(b)
                 ELSE chr(256 + row_number() OVER (PARTITION BY printable ORDER BY b)::int - 1) END AS ch
  FROM (SELECT b, (b BETWEEN 33 AND 126 OR b BETWEEN 161 AND 172 OR b BETWEEN 174 AND 255) AS printable
        FROM generate_series(0, 255) b) s;

SELECT jsonb_build_object(
  'version', '1.0',
  'added_tokens', (SELECT jsonb_agg(jsonb_build_object(
                     'id', 255 + n, 'content', tok, 'single_word', false, 'lstrip', false,
                     'rstrip', false, 'normalized', false, 'special', true) ORDER BY n)
                   FROM unnest(ARRAY['<|endoftext|>', '<|im_start|>', '<|im_end|>']) WITH ORDINALITY t(tok, n)),
  'normalizer', NULL,
  'pre_tokenizer', jsonb_build_object('type', 'ByteLevel', 'add_prefix_space', false,
                                      'trim_offsets', true, 'use_regex', true),
  'post_processor', NULL,
  'decoder', jsonb_build_object('type', 'ByteLevel', 'add_prefix_space', false,
                                'trim_offsets', true, 'use_regex', true),
  'model', jsonb_build_object(
    'type', 'BPE', 'dropout', NULL, 'unk_token', NULL, 'continuing_subword_prefix', NULL,
    'end_of_word_suffix', NULL, 'fuse_unk', false, 'byte_fallback', false,
    'vocab', (SELECT jsonb_object_agg(ch, b) FROM byte_alphabet),
    'merges', '[]'::jsonb))::text AS tokenizer_json
\gset

SELECT * FROM sft_tokenizer_load('pebble-bytes', :'tokenizer_json',
  '{"bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}');
SELECT * FROM sft_tokenizer_set_template('pebble-bytes', 'chatml');

SELECT name, kind, vocab_size, special_tokens, chat_template, default_system, end_of_turn_token
FROM sft_tokenizers WHERE name = 'pebble-bytes';

-- Every character is a token; the template's control tokens are single ids.
SELECT sft_tokenize('pebble-bytes', 'Hi, Pebble!') AS ids;
SELECT sft_render('pebble-bytes', '[{"role":"user","content":"What is your name?"}]', true) AS prompt;
SELECT input_ids, loss_mask
FROM sft_encode('pebble-bytes', '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]');
