-- sft_tokenizer_import from the server's file system.  The regression run is a
-- superuser: it writes the fixture files into the data directory with
-- lo_export and removes them at the end.  Error messages show <dir> for the
-- scratch directory, whose path differs per run.
\set bpe `cat test/fixtures/tiny_bpe.json`
\set cfg_chatml `cat test/fixtures/tiny_config_chatml.json`
\set vocab `cat test/fixtures/tiny_vocab.json`
\set merges `cat test/fixtures/tiny_merges.txt`
SELECT current_setting('data_directory') || '/sft_tokenizer_import' AS dir \gset

CREATE FUNCTION shell(command text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', command);
END $$;
CREATE FUNCTION write_file(path text, content bytea) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  lo oid := lo_from_bytea(0, content);
BEGIN
  PERFORM lo_export(lo, path);
  PERFORM lo_unlink(lo);
END $$;
-- the import's summary, or its error with the scratch path hidden
CREATE FUNCTION try_import(name text, directory text, scratch text DEFAULT :'dir')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM sft_tokenizer_import(name, directory);
  RETURN format('%s %s %s %s', r.kind, r.vocab_size, r.chat_template, r.default_system);
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || replace(SQLERRM, scratch, '<dir>');
END $$;

SELECT shell(format('rm -rf %s && mkdir -p %s/hf %s/hf_only %s/gpt2 %s/vocab_only %s/empty %s/bad_utf8 %s/truncated',
                    :'dir', :'dir', :'dir', :'dir', :'dir', :'dir', :'dir', :'dir'));
SELECT write_file(:'dir' || '/hf/tokenizer.json', convert_to(:'bpe', 'UTF8'));
SELECT write_file(:'dir' || '/hf/tokenizer_config.json', convert_to(:'cfg_chatml', 'UTF8'));
SELECT write_file(:'dir' || '/hf_only/tokenizer.json', convert_to(:'bpe', 'UTF8'));
SELECT write_file(:'dir' || '/gpt2/vocab.json', convert_to(:'vocab', 'UTF8'));
SELECT write_file(:'dir' || '/gpt2/merges.txt', convert_to(:'merges', 'UTF8'));
SELECT write_file(:'dir' || '/vocab_only/vocab.json', convert_to(:'vocab', 'UTF8'));
SELECT write_file(:'dir' || '/bad_utf8/tokenizer.json', '\x7b22ff227d'::bytea);
SELECT write_file(:'dir' || '/truncated/tokenizer.json', convert_to(left(:'bpe', 300), 'UTF8'));

-- tokenizer.json + tokenizer_config.json: template detected as with sft_tokenizer_load
SELECT try_import('imp_hf', :'dir' || '/hf');
SELECT try_import('imp_hf_only', :'dir' || '/hf_only/');
-- GPT-2 style vocab.json + merges.txt
SELECT try_import('imp_gpt2', :'dir' || '/gpt2');
SELECT name, kind, chat_template, merges IS NOT NULL AS has_merges, config IS NULL AS no_config
  FROM sft_tokenizers WHERE name LIKE 'imp\_%' ORDER BY name;
-- all three encode plain text alike (the GPT-2 pair has no added tokens)
SELECT sft_tokenize('imp_hf', 'Hello, the assistant!') = sft_tokenize('imp_gpt2', 'Hello, the assistant!') AS same_ids,
       sft_tokenize('imp_hf_only', 'Hello, the assistant!') = sft_tokenize('imp_gpt2', 'Hello, the assistant!') AS same_ids_2,
       sft_detokenize('imp_gpt2', sft_tokenize('imp_gpt2', 'Hello, the assistant!'));
SELECT sft_render('imp_hf', '[{"role":"user","content":"Hi"}]', true);

-- errors
SELECT try_import('imp_missing', :'dir' || '/no_such_dir');
SELECT try_import('imp_empty', :'dir' || '/empty');
SELECT try_import('imp_vocab_only', :'dir' || '/vocab_only');
SELECT try_import('imp_file', :'dir' || '/hf/tokenizer.json');
SELECT try_import('imp_bad_utf8', :'dir' || '/bad_utf8');
SELECT try_import('imp_truncated', :'dir' || '/truncated');
SELECT try_import('imp_hf', :'dir' || '/hf');
SELECT try_import('imp_relative', 'sft_tokenizer_import/hf');
SELECT try_import('', :'dir' || '/hf');
SELECT try_import(NULL, :'dir' || '/hf');
SELECT try_import('imp_null', NULL);
SELECT count(*) AS left_behind FROM sft_tokenizers
 WHERE name IN ('imp_missing', 'imp_empty', 'imp_vocab_only', 'imp_file', 'imp_bad_utf8', 'imp_truncated', 'imp_relative');

-- members of pg_read_server_files may import; the row is theirs
CREATE ROLE regress_sft_reader;
GRANT pg_read_server_files TO regress_sft_reader;
SET ROLE regress_sft_reader;
SELECT try_import('imp_reader', :'dir' || '/hf');
SELECT name, owner FROM sft_tokenizers WHERE name = 'imp_reader';
SELECT sft_tokenizer_drop('imp_reader');
RESET ROLE;
-- others may not, whatever the directory
CREATE ROLE regress_sft_nobody;
SET ROLE regress_sft_nobody;
SELECT try_import('imp_nobody', :'dir' || '/hf');
SELECT try_import('imp_nobody', '/nonexistent');
RESET ROLE;
DROP ROLE regress_sft_reader;
DROP ROLE regress_sft_nobody;

SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'imp\_%' ORDER BY name;
SELECT shell(format('rm -rf %s', :'dir'));
DROP FUNCTION shell(text);
DROP FUNCTION write_file(text, bytea);
DROP FUNCTION try_import(text, text, text);
