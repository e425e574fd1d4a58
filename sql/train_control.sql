-- Controlling runs: progress while running, sft_wait with a timeout,
-- sft_cancel then sft_resume, a terminated worker (interrupted) resumed; the
-- resumed runs end exactly where an uninterrupted run with the same seed ends.
SET client_min_messages = warning;
SET sft.threads = 1;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
CREATE TEMP TABLE tctl_lo_before AS SELECT count(*) AS n FROM pg_largeobject_metadata;
SELECT tokenizer FROM sft_tokenizer_load('tctl_tok', :'tokjson', :'tokcfg');
SELECT sft_model_create('tctl_base', 'tctl_tok', '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512}', 1);
CREATE TABLE tctl_data AS
  SELECT n, sft_from_pair('Question number ' || n, 'Answer number ' || n) AS messages
    FROM generate_series(1, 100) n;
-- waits (bounded) until the run has finished at least one epoch
CREATE FUNCTION tctl_wait_first_epoch(run bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..3000 LOOP
    IF EXISTS (SELECT FROM sft_run_epochs WHERE run_id = run) THEN RETURN true; END IF;
    IF NOT sft_run_active(run) THEN RETURN false; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RETURN false;
END $$;
\set train_args 'epochs => 6, learning_rate => 0.003, max_length => 96, batch_size => 2, options => \'{"seed": 3, "dropout": 0.1, "warmup_ratio": 0.1}\''

-- the reference: the same run, never interrupted
SELECT sft_train('tctl_data', 'tctl_base', 'tctl_reference', :train_args) AS ref \gset
SELECT sft_wait(:ref);

-- cancel in the middle, then resume
SELECT sft_train('tctl_data', 'tctl_base', 'tctl_cancelled', :train_args) AS run \gset
SELECT tctl_wait_first_epoch(:run);
SELECT run = :run AS this_run, phase IN ('training', 'validating', 'checkpointing') AS training,
       epochs, steps, step > 0 AS stepping, loss > 0 AS has_loss, tokens_per_s > 0 AS has_speed,
       owner, output, pid IS NOT NULL AS has_pid,
       recent_loss ~ '^[▁▂▃▄▅▆▇█]+$' AS has_sparkline
  FROM sft_progress WHERE run = :run;
SELECT sft_wait(:run, '10 ms');
SELECT sft_cancel(:run);
SELECT status, error, epochs_done BETWEEN 1 AND 5 AS stopped_midway, finished IS NOT NULL AS finished
  FROM sft_runs WHERE id = :run;
SELECT count(*) FILTER (WHERE checkpoint IS NOT NULL) AS checkpoints_kept FROM sft_run_epochs WHERE run_id = :run;
SELECT count(*) AS no_model_yet FROM sft_models WHERE name = 'tctl_cancelled';
SELECT sft_cancel(:run) AS cancel_again;
-- resuming from a checkpoint needs the same rows: a changed row is refused
UPDATE tctl_data SET messages = sft_from_pair('Changed', 'Changed') WHERE n = 1;
SELECT sft_resume(:run) = :run AS resumed;
SET client_min_messages = error;
SELECT sft_wait(:run);
SET client_min_messages = warning;
SELECT status, error LIKE 'the rows of public.tctl_data changed since training run % started.%' AS changed_rows_refused
  FROM sft_runs WHERE id = :run;
UPDATE tctl_data SET messages = sft_from_pair('Question number 1', 'Answer number 1') WHERE n = 1;
SELECT sft_resume(:run) = :run AS resumed;
SELECT set_config('tctl.run', :'run', false) IS NOT NULL AS remembered;
DO $$ BEGIN
  PERFORM sft_resume(current_setting('tctl.run')::bigint);
EXCEPTION WHEN object_in_use THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
SELECT sft_wait(:run);
SELECT status, error, attempts, epochs_done, steps_done = steps AS all_steps FROM sft_runs WHERE id = :run;
-- identical to the uninterrupted run: weights, epoch losses, logged steps
SELECT md5(lo_get(r.weights)) = md5(lo_get(c.weights)) AS same_weights
  FROM sft_models r, sft_models c WHERE r.name = 'tctl_reference' AND c.name = 'tctl_cancelled';
SELECT count(*) AS epochs, count(*) FILTER (WHERE r.train_loss = c.train_loss) AS same_loss
  FROM sft_run_epochs r JOIN sft_run_epochs c USING (epoch) WHERE r.run_id = :ref AND c.run_id = :run;
SELECT (SELECT count(*) FROM sft_run_log WHERE run_id = :run) = (SELECT count(*) FROM sft_run_log WHERE run_id = :ref) AS same_log_rows,
       count(*) FILTER (WHERE r.loss <> c.loss OR r.learning_rate <> c.learning_rate) AS different_steps
  FROM sft_run_log r JOIN sft_run_log c USING (step) WHERE r.run_id = :ref AND c.run_id = :run;

-- a terminated worker: the run shows as interrupted and resumes to the same end
SELECT sft_train('tctl_data', 'tctl_base', 'tctl_terminated', :train_args) AS run \gset
SELECT tctl_wait_first_epoch(:run);
SELECT pg_terminate_backend(pid) FROM sft_progress WHERE run = :run;
DO $$ BEGIN
  FOR i IN 1..1000 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM sft_progress);
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
SELECT status, sft_run_active(id) AS active FROM sft_runs WHERE id = :run;
SELECT sft_wait(:run);
SELECT sft_resume(:run) = :run AS resumed;
SELECT sft_wait(:run);
SELECT status, attempts FROM sft_runs WHERE id = :run;
SELECT md5(lo_get(r.weights)) = md5(lo_get(t.weights)) AS same_weights
  FROM sft_models r, sft_models t WHERE r.name = 'tctl_reference' AND t.name = 'tctl_terminated';

-- cancelled before the first epoch ended: resuming starts over from the base
SELECT sft_train('tctl_data', 'tctl_base', 'tctl_early', :train_args) AS run \gset
SELECT sft_cancel(:run);
SELECT status, epochs_done FROM sft_runs WHERE id = :run;
SELECT count(*) AS checkpoints FROM sft_run_epochs WHERE run_id = :run;
SELECT sft_resume(:run) = :run AS resumed;
SELECT sft_wait(:run);
SELECT md5(lo_get(r.weights)) = md5(lo_get(e.weights)) AS same_weights
  FROM sft_models r, sft_models e WHERE r.name = 'tctl_reference' AND e.name = 'tctl_early';

-- a model cannot be dropped while a run trains from it
SELECT sft_train('tctl_data', 'tctl_base', 'tctl_busy', :train_args) AS run \gset
DO $$ BEGIN
  PERFORM sft_model_drop('tctl_base');
EXCEPTION WHEN object_in_use THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
DO $$ BEGIN
  PERFORM sft_run_drop(max(id)) FROM sft_run_table WHERE output = 'tctl_busy';
EXCEPTION WHEN object_in_use THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
SELECT sft_cancel(:run);
-- the worker exits on its own time: wait, so that later tests find no active run
SET client_min_messages = warning;
SELECT sft_wait(:run);
RESET client_min_messages;

-- clean up: no large object left
SELECT sft_model_drop(name) FROM sft_models WHERE name LIKE 'tctl\_%' AND name <> 'tctl_base' ORDER BY name;
SELECT bool_and(sft_run_drop(id)) FROM sft_run_table WHERE output LIKE 'tctl\_%';
SELECT sft_model_drop('tctl_base');
SELECT (SELECT count(*) FROM pg_largeobject_metadata) - n AS orphaned_large_objects FROM tctl_lo_before;
SELECT sft_tokenizer_drop('tctl_tok');
DROP TABLE tctl_data;
DROP FUNCTION tctl_wait_first_epoch(bigint);
