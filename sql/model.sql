-- Models as rows + large objects: create, drop, export/import, ownership.
SET client_min_messages = warning;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer, vocab_size FROM sft_tokenizer_load('model_tok', :'tokjson', :'tokcfg');
CREATE TEMP TABLE lo_before AS SELECT count(*) AS n FROM pg_largeobject_metadata;

\set cfg '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 128, "tie_word_embeddings": true}'

-- create: parameter count returned, row and large object in place
SELECT sft_model_create('model_a', 'model_tok', :'cfg', 7);
SELECT name, tokenizer, dtype, parent, run_id, owner, parameters,
       size_bytes > parameters * 4 AS size_covers_params,
       config->>'model_type' AS model_type, (config->>'vocab_size')::int AS vocab_size
  FROM sft_models WHERE name = 'model_a';
SELECT l.lomowner::regrole AS lo_owner
  FROM sft_models m JOIN pg_largeobject_metadata l ON l.oid = m.weights WHERE m.name = 'model_a';
-- the same seed gives the same weights
SELECT sft_model_create('model_b', 'model_tok', :'cfg', 7);
SELECT md5(lo_get(a.weights)) = md5(lo_get(b.weights)) AS same_weights
  FROM sft_models a, sft_models b WHERE a.name = 'model_a' AND b.name = 'model_b';
SELECT sft_model_create('model_c', 'model_tok', :'cfg', 8);
SELECT md5(lo_get(a.weights)) <> md5(lo_get(c.weights)) AS different_weights
  FROM sft_models a, sft_models c WHERE a.name = 'model_a' AND c.name = 'model_c';
-- no seed: random weights, still a model
SELECT sft_model_create('model_d', 'model_tok', :'cfg') > 0 AS created;
-- untied embeddings add the LM head
SELECT sft_model_create('model_untied', 'model_tok',
       jsonb_set(:'cfg'::jsonb, '{tie_word_embeddings}', 'false'), 1)
     - (SELECT parameters FROM sft_models WHERE name = 'model_a') AS lm_head_params;

-- create: bad input
SELECT sft_model_create('model_a', 'model_tok', :'cfg', 1);
SELECT sft_model_create('', 'model_tok', :'cfg', 1);
SELECT sft_model_create(NULL, 'model_tok', :'cfg', 1);
SELECT sft_model_create('model_x', NULL, :'cfg', 1);
SELECT sft_model_create('model_x', 'model_tok', NULL, 1);
SELECT sft_model_create('model_x', 'no_such_tokenizer', :'cfg', 1);
SELECT sft_model_create('model_x', 'model_tok', '[]', 1);
SELECT sft_model_create('model_x', 'model_tok', '42', 1);
SELECT sft_model_create('model_x', 'model_tok', jsonb_set(:'cfg'::jsonb, '{vocab_size}', '300'), 1);
SELECT sft_model_create('model_x', 'model_tok', jsonb_set(:'cfg'::jsonb, '{num_key_value_heads}', '3'), 1);
SELECT sft_model_create('model_x', 'model_tok', jsonb_set(:'cfg'::jsonb, '{hidden_size}', '-1'), 1);
SELECT sft_model_create('model_x', 'model_tok', :'cfg'::jsonb - 'hidden_size', 1);
SELECT sft_model_create('model_x', 'model_tok', jsonb_set(:'cfg'::jsonb, '{rope_scaling}', '{"type": "yarn", "factor": 2}'), 1);
SELECT sft_model_create('model_x', 'model_tok', jsonb_set(:'cfg'::jsonb, '{attention_bias}', 'true'), 1);
SELECT sft_model_create('model_x', 'model_tok', jsonb_set(:'cfg'::jsonb, '{hidden_act}', '"gelu"'), 1);
SET sft.max_memory = '16MB';
SELECT sft_model_create('model_x', 'model_tok', jsonb_set(jsonb_set(:'cfg'::jsonb, '{hidden_size}', '2048'), '{intermediate_size}', '8192'), 1);
RESET sft.max_memory;
SELECT count(*) AS failed_creates_left_nothing FROM sft_models WHERE name = 'model_x';
-- a tokenizer a model uses cannot be dropped
SELECT sft_tokenizer_drop('model_tok');

-- export and import round trip (the server writes into its data directory)
SELECT current_setting('data_directory') || '/sft_regress_export' AS export_dir \gset
SELECT array_length(files, 1) AS n_files,
       (SELECT array_agg(regexp_replace(f, '^.*/', '') ORDER BY 1) FROM unnest(files) f) AS files
  FROM sft_model_export('model_a', :'export_dir') AS files;
SELECT sft_model_import('model_imported', :'export_dir');
SELECT tokenizer, parameters, config = (SELECT config FROM sft_models WHERE name = 'model_a') AS same_config
  FROM sft_models WHERE name = 'model_imported';
-- its tokenizer came along under the model's name
SELECT name, kind, vocab_size, chat_template FROM sft_tokenizers WHERE name = 'model_imported';
-- imported weights are the exported ones (fp32 round trip is exact)
SELECT md5(lo_get(a.weights)) = md5(lo_get(i.weights)) AS same_weights
  FROM sft_models a, sft_models i WHERE a.name = 'model_a' AND i.name = 'model_imported';
-- a second import under another name brings its own tokenizer row
SELECT sft_model_import('model_imported2', :'export_dir');
SELECT tokenizer FROM sft_models WHERE name = 'model_imported2';
-- import/export: bad input
SELECT sft_model_import('model_imported', :'export_dir');
SELECT sft_model_import('model_y', 'relative/path');
SELECT sft_model_import('model_y', '/nonexistent/sft/dir');
SELECT sft_model_import('model_y', NULL);
SELECT sft_model_export('no_such_model', :'export_dir');
SELECT sft_model_export('model_a', 'relative/path');
SELECT count(*) AS failed_imports_left_nothing FROM sft_models WHERE name = 'model_y';
-- a file that cannot be put in place leaves nothing half-written: the
-- tokenizer.json a second export must write is taken by a directory (made by
-- exporting into it); the export fails and no temporary file is left
SELECT array_length(sft_model_export('model_a', :'export_dir' || '/blocked/tokenizer.json'), 1) > 0 AS made;
DO $$ BEGIN
  PERFORM sft_model_export('model_a', current_setting('data_directory') || '/sft_regress_export/blocked');
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING '%: %', SQLSTATE, regexp_replace(SQLERRM, '"[^"]*/', '"<dir>/', 'g');
END $$;
SELECT f FROM pg_ls_dir(:'export_dir' || '/blocked') f WHERE f LIKE '%tmp%' ORDER BY 1;

-- damaged weights are reported, never loaded: a truncated and a corrupted
-- copy of model_a's large object swapped in by a superuser behind the functions' back
CREATE TEMP TABLE model_saved AS SELECT weights FROM sft_models WHERE name = 'model_a';
UPDATE sft_models SET weights = lo_from_bytea(0, substring(lo_get(weights) FROM 1 FOR 1000))
 WHERE name = 'model_a';
SELECT sft_model_export('model_a', :'export_dir');
SELECT lo_unlink(weights) FROM sft_models WHERE name = 'model_a';
UPDATE sft_models SET weights = lo_from_bytea(0, overlay(lo_get(m.weights) PLACING '\x00000000'::bytea
                                                         FROM (length(lo_get(m.weights)) / 2) FOR 4))
  FROM model_saved m WHERE name = 'model_a';
SELECT set_config('model.export_dir', :'export_dir', false) IS NOT NULL AS remembered;
DO $$ BEGIN
  PERFORM sft_model_export('model_a', current_setting('model.export_dir'));
EXCEPTION WHEN data_corrupted THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, 'stored [0-9a-f]+, computed [0-9a-f]+', 'stored X, computed Y');
END $$;
SELECT lo_unlink(weights) FROM sft_models WHERE name = 'model_a';
UPDATE sft_models SET weights = m.weights FROM model_saved m WHERE name = 'model_a';

-- ownership: another role can neither drop nor export, nor read the weights
CREATE ROLE regress_sft_model_owner LOGIN;
CREATE ROLE regress_sft_model_other LOGIN;
GRANT pg_write_server_files, pg_read_server_files TO regress_sft_model_other;
SET ROLE regress_sft_model_owner;
SELECT sft_model_create('model_owned', 'model_tok', :'cfg', 1);
SELECT owner FROM sft_models WHERE name = 'model_owned';
SELECT sft_model_export('model_owned', :'export_dir');
SET ROLE regress_sft_model_other;
SELECT sft_model_drop('model_owned');
SELECT sft_model_export('model_owned', :'export_dir');
DO $$
BEGIN
  PERFORM lo_get(weights) FROM sft_models WHERE name = 'model_owned';
  RAISE WARNING 'the weights were readable';
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'reading the weights: permission denied';
END $$;
-- the catalog is read-only for users
DELETE FROM sft_models WHERE name = 'model_owned';
UPDATE sft_models SET owner = 'regress_sft_model_other' WHERE name = 'model_owned';
RESET ROLE;
-- the owner may grant reading
SET ROLE regress_sft_model_owner;
DO $$
BEGIN
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO regress_sft_model_other',
                 (SELECT weights FROM sft_models WHERE name = 'model_owned'));
END $$;
SET ROLE regress_sft_model_other;
SELECT length(lo_get(weights)) > 0 AS readable FROM sft_models WHERE name = 'model_owned';
SET ROLE regress_sft_model_owner;
SELECT sft_model_drop('model_owned');
RESET ROLE;

-- drop: row and large object go; nothing orphaned
SELECT sft_model_drop('no_such_model');
SELECT sft_model_drop(NULL);
SELECT sft_model_drop(name) FROM sft_models
 WHERE name IN ('model_a', 'model_b', 'model_c', 'model_d', 'model_untied', 'model_imported', 'model_imported2')
 ORDER BY name;
SELECT count(*) AS models_left FROM sft_models WHERE name LIKE 'model\_%';
SELECT (SELECT count(*) FROM pg_largeobject_metadata) - n AS orphaned_large_objects FROM lo_before;
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers
 WHERE name IN ('model_tok', 'model_imported', 'model_imported2') ORDER BY name;
DROP ROLE regress_sft_model_owner;
DROP ROLE regress_sft_model_other;
