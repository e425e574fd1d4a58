-- Tokenizer catalog: loading, tokenize/detokenize/token_count, bad input,
-- ownership.  Fixtures are tiny synthetic tokenizers (test/fixtures/).
\set bpe `cat test/fixtures/tiny_bpe.json`
\set sp `cat test/fixtures/tiny_sp.json`
\set cfg_chatml `cat test/fixtures/tiny_config_chatml.json`
\set cfg_llama2 `cat test/fixtures/tiny_config_llama2.json`
\set cfg_other `cat test/fixtures/tiny_config_other.json`

-- loading: kind, size, special tokens and the template detected from the config
SELECT * FROM sft_tokenizer_load('tiny', :'bpe', :'cfg_chatml');
SELECT * FROM sft_tokenizer_load('sp', :'sp', :'cfg_llama2');
SELECT * FROM sft_tokenizer_load('plain', :'bpe');
SELECT * FROM sft_tokenizer_load('other', :'bpe', :'cfg_other');
SELECT name, kind, vocab_size, special_tokens, chat_template, default_system,
       end_of_turn_token, bos_token, eos_token, owner, merges IS NULL AS no_merges,
       config ->> 'eos_token' AS config_eos, octet_length(source) > 1000 AS has_source
  FROM sft_tokenizers ORDER BY name;

-- tokenize / detokenize / count
SELECT sft_tokenize('tiny', 'Hello world');
SELECT sft_detokenize('tiny', sft_tokenize('tiny', 'Hello world'));
SELECT sft_token_count('tiny', 'Hello world');
SELECT sft_tokenize('tiny', ''), sft_token_count('tiny', ''), sft_detokenize('tiny', '{}');
SELECT sft_tokenize('sp', 'Hello world'), sft_detokenize('sp', sft_tokenize('sp', 'Hello world'));
-- special-token text is plain text unless split_special
SELECT sft_tokenize('tiny', '<|im_end|>'), sft_tokenize('tiny', '<|im_end|>', true);
SELECT sft_tokenize('sp', '</s>'), sft_tokenize('sp', '</s>', split_special => true);
SELECT sft_detokenize('tiny', sft_tokenize('tiny', 'a<|im_end|>b', true)),
       sft_detokenize('tiny', sft_tokenize('tiny', 'a<|im_end|>b', true), skip_special => true);
-- byte-level round trip on text the tiny vocabulary has never seen
SELECT t, sft_detokenize('tiny', sft_tokenize('tiny', t)) = t AS round_trip,
       sft_token_count('tiny', t)
  FROM (VALUES ('  leading and trailing  '), (E'tabs\tand\nnewlines\r\n'), ('12345 67'),
               ('emoji 😀👍🏽'), ('漢字かなカナ'), ('العربية'), ('e' || U&'\0301' || ' é'),
               ('<|im_start|>user'), ('<s>[INST]</s>')) AS v(t);
SELECT sft_detokenize('sp', sft_tokenize('sp', 'byte fallback: 漢字 😀'));

-- SQL NULL in: NULL out (strict functions)
SELECT sft_tokenize(NULL, 'x') IS NULL, sft_tokenize('tiny', NULL) IS NULL,
       sft_tokenize('tiny', 'x', NULL) IS NULL, sft_detokenize('tiny', NULL) IS NULL,
       sft_token_count('tiny', NULL::text) IS NULL, sft_token_count(NULL, 'x') IS NULL;

-- bad ids
SELECT sft_detokenize('tiny', ARRAY[72, NULL]);
SELECT sft_detokenize('tiny', ARRAY[[72, 101], [108, 108]]);
SELECT sft_detokenize('tiny', ARRAY[-1]);
SELECT sft_detokenize('tiny', ARRAY[100000]);
-- half of "é" decodes to U+FFFD, as Hugging Face decodes it; both halves give "é"
SELECT sft_detokenize('tiny', ARRAY[(sft_tokenize('tiny', 'é'))[1]]);
SELECT sft_detokenize('tiny', sft_tokenize('tiny', 'é'));

-- unknown tokenizers
SELECT sft_tokenize('nope', 'x');
SELECT sft_tokenize('', 'x');
SELECT sft_token_count(repeat('n', 100), 'x');
SELECT sft_detokenize('nope', '{1}');

-- invalid UTF-8 cannot reach the functions: the server rejects it first
SELECT sft_tokenize('tiny', convert_from('\xff'::bytea, 'UTF8'));

-- 1 MB strings
SELECT sft_token_count('tiny', repeat('Hello world. ', 80000));
SELECT sft_token_count('tiny', repeat('x', 1048576));
SELECT sft_token_count('sp', repeat('Hello world. ', 80000));
SELECT length(sft_detokenize('tiny', sft_tokenize('tiny', repeat('ab ', 350000))));
SELECT cardinality(sft_tokenize('sp', repeat('漢', 350000)));

-- loading errors: nothing is left behind
SELECT sft_tokenizer_load('tiny', :'bpe');
SELECT sft_tokenizer_load(NULL, :'bpe');
SELECT sft_tokenizer_load('x', NULL);
SELECT sft_tokenizer_load('', :'bpe');
SELECT sft_tokenizer_load(repeat('n', 64), :'bpe');
SELECT sft_tokenizer_load('bad', left(:'bpe', 500));
SELECT sft_tokenizer_load('bad', '');
SELECT sft_tokenizer_load('bad', '[]');
SELECT sft_tokenizer_load('bad', '{}');
SELECT sft_tokenizer_load('bad', '{"model": {"type": "BPE", "vocab": [1, 2], "merges": []}}');
SELECT sft_tokenizer_load('bad', '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}');
SELECT sft_tokenizer_load('bad', jsonb_set(:'bpe'::jsonb, '{added_tokens}', '"oops"')::text);
SELECT sft_tokenizer_load('bad', jsonb_set(:'bpe'::jsonb, '{model,merges}', '[42]')::text);
SELECT sft_tokenizer_load('bad', jsonb_set(:'bpe'::jsonb, '{model,vocab,a}', '"zero"')::text);
SELECT sft_tokenizer_load('bad', jsonb_set(:'bpe'::jsonb, '{model,merges}', '["zz qq"]')::text);
SELECT sft_tokenizer_load('bad', jsonb_set(:'bpe'::jsonb, '{pre_tokenizer}',
    '{"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}')::text);
SELECT sft_tokenizer_load('bad', :'bpe', '{not json');
SELECT sft_tokenizer_load('bad', :'bpe', '[1, 2]');
SELECT sft_tokenizer_load('bad', :'bpe', '{"chat_template": 42}');
SELECT count(*) AS bad_rows FROM sft_tokenizers WHERE name = 'bad';

-- ownership: everybody reads and uses, only the owner changes or drops
CREATE ROLE regress_sft_alice;
CREATE ROLE regress_sft_bob;
SET ROLE regress_sft_alice;
SELECT tokenizer, kind FROM sft_tokenizer_load('alice_tok', :'bpe', :'cfg_chatml');
SET ROLE regress_sft_bob;
SELECT name, owner FROM sft_tokenizers WHERE name = 'alice_tok';
SELECT sft_token_count('alice_tok', 'Hello');
SELECT sft_tokenizer_drop('alice_tok');
SELECT sft_tokenizer_set_template('alice_tok', 'llama3');
SELECT sft_tokenizer_set_template('alice_tok', NULL);
DELETE FROM sft_tokenizers WHERE name = 'alice_tok';
UPDATE sft_tokenizers SET chat_template = NULL WHERE name = 'alice_tok';
INSERT INTO sft_tokenizers (name, kind, vocab_size, special_tokens, source)
    VALUES ('forged', 'byte_bpe', 1, '{}', '{}');
-- a role without pg_read_server_files may not import from the server
SELECT sft_tokenizer_import('bob_tok', '/tmp');
RESET ROLE;
-- members of the owning role may change it
GRANT regress_sft_alice TO regress_sft_bob;
SET ROLE regress_sft_bob;
SELECT sft_tokenizer_set_template('alice_tok', 'llama3');
SELECT name, chat_template FROM sft_tokenizers WHERE name = 'alice_tok';
RESET ROLE;
REVOKE regress_sft_alice FROM regress_sft_bob;
SET ROLE regress_sft_alice;
SELECT sft_tokenizer_drop('alice_tok');
SELECT sft_tokenizer_drop('alice_tok');
RESET ROLE;
-- a superuser may drop anybody's tokenizer
SET ROLE regress_sft_alice;
SELECT tokenizer FROM sft_tokenizer_load('alice_tok2', :'bpe');
RESET ROLE;
SELECT sft_tokenizer_drop('alice_tok2');
DROP ROLE regress_sft_alice;
DROP ROLE regress_sft_bob;

-- the cache follows the catalog: drop and reload under the same name
SELECT sft_token_count('plain', 'Hello world');
SELECT sft_tokenizer_drop('plain');
SELECT sft_token_count('plain', 'Hello world');
SELECT tokenizer, kind FROM sft_tokenizer_load('plain', :'sp');
SELECT sft_token_count('plain', 'Hello world');
-- a rolled-back load leaves nothing usable behind
BEGIN;
SELECT tokenizer FROM sft_tokenizer_load('ghost', :'bpe');
SELECT sft_token_count('ghost', 'Hello');
ROLLBACK;
SELECT sft_token_count('ghost', 'Hello');
-- a dropped tokenizer in a rolled-back transaction comes back
BEGIN;
SELECT sft_tokenizer_drop('plain');
ROLLBACK;
SELECT sft_token_count('plain', 'Hello world');
-- drop NULL / unknown
SELECT sft_tokenizer_drop(NULL);
SELECT sft_tokenizer_drop('nope');

-- the catalog is dumped with the extension's data
SELECT c.relname, e.extconfig IS NOT NULL AS dumped
  FROM pg_extension e, pg_class c
 WHERE e.extname = 'sft' AND c.oid = ANY (e.extconfig) AND c.relname = 'sft_tokenizers';

SELECT sft_tokenizer_drop(name) FROM sft_tokenizers
 WHERE name IN ('tiny', 'sp', 'plain', 'other') ORDER BY name;
