-- sft_train: everything checked in the caller's session before a run starts,
-- with clear errors, and nothing left behind when a check fails.
SET client_min_messages = warning;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer FROM sft_tokenizer_load('topt_tok', :'tokjson', :'tokcfg');
SELECT sft_model_create('topt_base', 'topt_tok', '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512}', 1);
CREATE TABLE topt_src (id int, messages jsonb, messages_json json, note text);
INSERT INTO topt_src VALUES (1, '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]',
                                '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]', 'x');
CREATE SEQUENCE topt_seq;
CREATE INDEX topt_src_idx ON topt_src (id);
CREATE TEMP TABLE topt_before AS
  SELECT (SELECT count(*) FROM sft_run_table) AS runs, (SELECT count(*) FROM pg_largeobject_metadata) AS los;

-- NULL arguments
SELECT sft_train(NULL, 'topt_base', 'topt_out');
SELECT sft_train('topt_src', NULL, 'topt_out');
SELECT sft_train('topt_src', 'topt_base', NULL);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', epochs => NULL);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', learning_rate => NULL);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', max_length => NULL);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', batch_size => NULL);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => NULL);

-- the plain arguments
SELECT sft_train('topt_src', 'topt_base', 'topt_out', epochs => 0);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', learning_rate => 0);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', learning_rate => -1e-5);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', learning_rate => 'nan');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', learning_rate => 'infinity');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', max_length => 1);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', max_length => 513);
SELECT sft_train('topt_src', 'topt_base', 'topt_out', batch_size => 0);

-- options: unknown keys, wrong types, values out of range
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '[]');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '"grad_accum"');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"gradient_accumulation": 2}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"grad_accum": 0}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"grad_accum": 1.5}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"grad_accum": "2"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"grad_accum": null}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"lr_schedule": "step"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"lr_schedule": 1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"warmup_ratio": 1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"warmup_ratio": -0.1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"min_lr_ratio": 1.5}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"weight_decay": -1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"dropout": 1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"dropout": true}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"max_grad_norm": -1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"seed": 1.5}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"seed": 99999999999999999999}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"seed": "42"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"validation": ""}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"validation": 5}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"validation": "topt_nosuch"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"validation_fraction": 1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"validation_fraction": -0.5}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"validation": "topt_src", "validation_fraction": 0.1}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"messages_column": ""}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"messages_column": "nope"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"messages_column": "id"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"messages_column": "messages_json"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"template": "jinja"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"train_on": "everything"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"too_long": "wrap"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"keep": "first"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"keep": "best"}');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"log_every": 0}');

-- the source
SELECT sft_train('topt_nosuch', 'topt_base', 'topt_out');
SELECT sft_train('nosuch_schema.topt_src', 'topt_base', 'topt_out');
SELECT sft_train('topt_seq', 'topt_base', 'topt_out');
SELECT sft_train('topt_src_idx', 'topt_base', 'topt_out');
SELECT sft_train('"unterminated', 'topt_base', 'topt_out');
SELECT sft_train('topt_src', 'topt_base', 'topt_out', options => '{"messages_column": "note"}');

-- the base and output models
SELECT sft_train('topt_src', 'topt_nosuch', 'topt_out');
SELECT sft_train('topt_src', 'topt_base', 'topt_base');
SELECT sft_train('topt_src', 'topt_base', '');

-- the memory estimate
SET sft.max_memory = '16MB';
-- (the estimate itself follows the core's buffers, so its figure is masked)
DO $$ BEGIN
  PERFORM sft_train('topt_src', 'topt_base', 'topt_out', batch_size => 64, max_length => 512);
EXCEPTION WHEN program_limit_exceeded OR insufficient_resources OR invalid_parameter_value THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, 'about [0-9]+ MB', 'about N MB');
END $$;
RESET sft.max_memory;

-- privileges: SELECT on the source, ownership of the base model
CREATE ROLE regress_sft_topt LOGIN;
SET ROLE regress_sft_topt;
SELECT sft_train('topt_src', 'topt_base', 'topt_out');
RESET ROLE;
GRANT SELECT (id) ON topt_src TO regress_sft_topt;
SET ROLE regress_sft_topt;
SELECT sft_train('topt_src', 'topt_base', 'topt_out');
RESET ROLE;
GRANT SELECT (messages) ON topt_src TO regress_sft_topt;
SET ROLE regress_sft_topt;
SELECT sft_train('topt_src', 'topt_base', 'topt_out');
RESET ROLE;

-- a run queued in a transaction starts at commit: waiting for it inside is refused
BEGIN;
SELECT sft_train('topt_src', 'topt_base', 'topt_rolled_back', epochs => 1) > 0 AS queued;
DO $$ BEGIN
  PERFORM sft_wait(max(id)) FROM sft_run_table;
EXCEPTION WHEN object_not_in_prerequisite_state THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
ROLLBACK;
BEGIN;
SELECT sft_train('topt_src', 'topt_base', 'topt_rolled_back', epochs => 1) > 0 AS queued;
SELECT output, status FROM sft_runs WHERE output = 'topt_rolled_back';
ROLLBACK;
-- sft_wait cannot see a run end from a REPEATABLE READ snapshot
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT sft_wait(1);
ROLLBACK;

-- sft.max_concurrent_runs
-- (the workers of the rolled-back runs above notice the rollback and leave
-- on their own time: wait until no run holds a slot)
DO $$ BEGIN
  FOR i IN 1..1000 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM sft_progress);
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
ALTER SYSTEM SET sft.max_concurrent_runs = 1;
SELECT pg_reload_conf();
DO $$ BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN current_setting('sft.max_concurrent_runs') = '1';
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
BEGIN;
SELECT sft_train('topt_src', 'topt_base', 'topt_first', epochs => 1) > 0 AS queued;
SELECT sft_train('topt_src', 'topt_base', 'topt_second', epochs => 1);
ROLLBACK;
ALTER SYSTEM RESET sft.max_concurrent_runs;
SELECT pg_reload_conf();

-- the run functions' own checks
SELECT sft_wait(NULL);
SELECT sft_wait(-1);
SELECT sft_wait(1, '-1 second');
SELECT sft_cancel(NULL);
SELECT sft_cancel(-1);
SELECT sft_resume(NULL);
SELECT sft_resume(-1);
SELECT sft_run_drop(-1);

-- nothing was left behind by any of the failures above (the workers of the
-- rolled-back runs found no row and left)
DO $$ BEGIN
  FOR i IN 1..500 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM sft_progress);
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
SELECT (SELECT count(*) FROM sft_run_table) - runs AS new_runs,
       (SELECT count(*) FROM pg_largeobject_metadata) - los AS new_large_objects,
       (SELECT count(*) FROM sft_progress) AS active_runs
  FROM topt_before;
SELECT count(*) AS new_models FROM sft_models WHERE name LIKE 'topt\_%' AND name <> 'topt_base';

SELECT sft_model_drop('topt_base');
SELECT sft_tokenizer_drop('topt_tok');
DROP TABLE topt_src;
DROP SEQUENCE topt_seq;
DROP ROLE regress_sft_topt;
