-- Training runs end to end: a tiny model learns two conversations; views as
-- sources; validation and keep = best; row accounting; failures recorded.
SET client_min_messages = warning;
SET sft.threads = 1;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer FROM sft_tokenizer_load('trun_tok', :'tokjson', :'tokcfg');
CREATE TEMP TABLE trun_lo_before AS SELECT count(*) AS n FROM pg_largeobject_metadata;
SELECT sft_model_create('trun_base', 'trun_tok', '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512}', 1);

CREATE TABLE trun_qa (q text, a text);
INSERT INTO trun_qa VALUES
  ('What is the capital of France?', 'Paris is the capital.'),
  ('Write a short poem about the sea.', 'The sea is wide and the waves are high.');
CREATE TABLE trun_data AS
  SELECT n, sft_from_pair(q, a) AS messages FROM trun_qa, generate_series(1, 48) n;

-- two epochs on a small table
SELECT sft_train('trun_data', 'trun_base', 'trun_model', epochs => 2, learning_rate => 0.01,
                 max_length => 128, batch_size => 4,
                 options => '{"lr_schedule": "constant", "log_every": 1}') AS run \gset
SELECT sft_wait(:run);
SELECT status, error, owner, source, base, output, attempts, rows_read, rows_used,
       rows_too_long, rows_truncated, rows_no_assistant, rows_null, validation_rows,
       steps, steps_done, epochs_done, started <= finished AS timed
  FROM sft_runs WHERE id = :run;
SELECT options - 'template_now' AS options, (options ->> 'template_now')::timestamptz <= now() AS clock_recorded FROM sft_runs WHERE id = :run;
-- loss falls: per epoch, and from the first logged steps to the last
SELECT epoch, step, train_loss < 1.0 AS loss_below_1, validation_loss, checkpoint IS NOT NULL AS has_checkpoint
  FROM sft_run_epochs WHERE run_id = :run ORDER BY epoch;
SELECT (SELECT train_loss FROM sft_run_epochs WHERE run_id = :run AND epoch = 2)
     < (SELECT train_loss FROM sft_run_epochs WHERE run_id = :run AND epoch = 1) AS epoch_loss_falls;
SELECT count(*) AS log_rows, min(step), max(step), count(DISTINCT epoch) AS epochs,
       avg(loss) FILTER (WHERE step > 40) < avg(loss) FILTER (WHERE step <= 4) / 4 AS loss_falls,
       bool_and(learning_rate = 0.01) AS constant_lr, bool_and(grad_norm > 0) AS grad_norms,
       bool_and(tokens_per_s > 0) AS speeds
  FROM sft_run_log WHERE run_id = :run;
-- the output model: a child of the base, owned by the role, produced by the run
SELECT name, tokenizer, parent, run_id = :run AS from_run, owner, parameters
  FROM sft_models WHERE name = 'trun_model';
SELECT (SELECT weights FROM sft_models WHERE name = 'trun_model')
    <> (SELECT weights FROM sft_models WHERE name = 'trun_base') AS new_weights;
-- ... and answers greedily what it was trained on
SELECT q, sft_generate('trun_model', jsonb_build_array(jsonb_build_object('role', 'user', 'content', q)),
                       max_new_tokens => 24) = a AS learned
  FROM trun_qa ORDER BY q;
-- finished runs are no longer in the progress view
SELECT count(*) FROM sft_progress WHERE run = :run;
SELECT sft_cancel(:run) AS cancelled_a_finished_run;
SELECT set_config('trun.run', :'run', false) IS NOT NULL AS remembered;
DO $$ BEGIN
  PERFORM sft_resume(current_setting('trun.run')::bigint);
EXCEPTION WHEN object_not_in_prerequisite_state THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
-- its output name stays taken, its run too
SELECT sft_train('trun_data', 'trun_base', 'trun_model');

-- a view that filters and mixes two tables
CREATE TABLE trun_more (topic text, messages jsonb);
INSERT INTO trun_more SELECT 'geo', sft_from_pair('Where is Paris?', 'Paris is in France.') FROM generate_series(1, 16);
INSERT INTO trun_more SELECT 'junk', sft_from_pair('ignore me', 'no') FROM generate_series(1, 16);
CREATE VIEW trun_mix AS
  SELECT messages FROM trun_data WHERE n <= 8
  UNION ALL
  SELECT messages FROM trun_more WHERE topic = 'geo' AND sft_turns(messages) = 1;
SELECT sft_train('trun_mix', 'trun_base', 'trun_mixed', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 4) AS run \gset
SELECT sft_wait(:run);
SELECT status, source, rows_read, rows_used, steps FROM sft_runs WHERE id = :run;

-- gradient accumulation: 2 x 2 sequences per step is one step of 4
SELECT sft_train('trun_data', 'trun_base', 'trun_accum', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 2, options => '{"grad_accum": 2, "lr_schedule": "constant"}') AS run_accum \gset
SELECT sft_train('trun_data', 'trun_base', 'trun_noaccum', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 4, options => '{"lr_schedule": "constant"}') AS run_noaccum \gset
SELECT sft_wait(:run_accum), sft_wait(:run_noaccum);
SELECT a.steps = b.steps AS same_steps, abs(a.final_loss - b.final_loss) < 1e-4 AS same_loss
  FROM sft_runs a, sft_runs b WHERE a.id = :run_accum AND b.id = :run_noaccum;

-- the same seed trains the same model; another seed shuffles differently
SELECT sft_train('trun_data', 'trun_base', 'trun_seed_a', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 4, options => '{"seed": 7, "dropout": 0.1}') AS run_a \gset
SELECT sft_train('trun_data', 'trun_base', 'trun_seed_b', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 4, options => '{"seed": 7, "dropout": 0.1}') AS run_b \gset
SELECT sft_wait(:run_a), sft_wait(:run_b);
SELECT sft_train('trun_data', 'trun_base', 'trun_seed_c', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 4, options => '{"seed": 8, "dropout": 0.1}') AS run_c \gset
SELECT sft_wait(:run_c);
SELECT md5(lo_get(a.weights)) = md5(lo_get(b.weights)) AS same_seed_same_model,
       md5(lo_get(a.weights)) <> md5(lo_get(c.weights)) AS other_seed_other_model
  FROM sft_models a, sft_models b, sft_models c
 WHERE a.name = 'trun_seed_a' AND b.name = 'trun_seed_b' AND c.name = 'trun_seed_c';

-- validation_fraction: a seeded held-out share, a validation loss per epoch
SELECT sft_train('trun_data', 'trun_base', 'trun_valfrac', epochs => 2, learning_rate => 0.01,
                 max_length => 128, batch_size => 4, options => '{"validation_fraction": 0.25}') AS run \gset
SELECT sft_wait(:run);
SELECT rows_used, validation_rows FROM sft_runs WHERE id = :run;
SELECT epoch, validation_loss > 0 AS has_validation_loss FROM sft_run_epochs WHERE run_id = :run ORDER BY epoch;

-- keep = best: a validation set that contradicts the training data gets worse
-- every epoch, so the best epoch is the first, and the output is its weights
-- (the same as a one-epoch run: the constant schedule does not depend on the length)
CREATE TABLE trun_contra AS SELECT sft_from_pair('What is the capital of France?', 'Lyon, of course.') AS messages;
SELECT sft_train('trun_data', 'trun_base', 'trun_best', epochs => 3, learning_rate => 0.01,
                 max_length => 128, batch_size => 4,
                 options => '{"validation": "trun_contra", "keep": "best", "lr_schedule": "constant"}') AS run_best \gset
SELECT sft_train('trun_data', 'trun_base', 'trun_first_epoch', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 4, options => '{"lr_schedule": "constant"}') AS run_one \gset
SELECT sft_wait(:run_best), sft_wait(:run_one);
SELECT validation_rows, options->>'validation' AS validation, options->>'keep' AS keep FROM sft_runs WHERE id = :run_best;
SELECT epoch, validation_loss > lag(validation_loss) OVER (ORDER BY epoch) AS worse,
       checkpoint IS NOT NULL AS has_checkpoint
  FROM sft_run_epochs WHERE run_id = :run_best ORDER BY epoch;
SELECT md5(lo_get(b.weights)) = md5(lo_get(o.weights)) AS best_is_first_epoch
  FROM sft_models b, sft_models o WHERE b.name = 'trun_best' AND o.name = 'trun_first_epoch';

-- log_every, train_on, too_long, template
SELECT sft_train('trun_data', 'trun_base', 'trun_log3', epochs => 1, learning_rate => 0.01,
                 max_length => 128, batch_size => 4, options => '{"log_every": 5}') AS run \gset
SELECT sft_wait(:run);
SELECT steps, array_agg(step ORDER BY step) AS logged_steps
  FROM sft_runs r JOIN sft_run_log l ON l.run_id = r.id WHERE r.id = :run GROUP BY steps;
CREATE TABLE trun_two_turns AS SELECT '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
  {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "Sure, here it is."}]'::jsonb AS messages
  FROM generate_series(1, 4);
SELECT sft_train('trun_two_turns', 'trun_base', 'trun_all', epochs => 1, max_length => 128) AS run_all \gset
SELECT sft_train('trun_two_turns', 'trun_base', 'trun_last', epochs => 1, max_length => 128,
                 options => '{"train_on": "last_assistant"}') AS run_last \gset
SELECT sft_wait(:run_all), sft_wait(:run_last);
SELECT sft_train('trun_two_turns', 'trun_base', 'trun_llama3', epochs => 1, max_length => 128,
                 options => '{"template": "llama3"}') AS run_llama3 \gset
SELECT sft_wait(:run_llama3);
SELECT a.tokens = l.tokens AS same_tokens, l.target_tokens < a.target_tokens AS fewer_targets,
       t.tokens <> a.tokens AS llama3_renders_differently
  FROM sft_runs a, sft_runs l, sft_runs t WHERE a.id = :run_all AND l.id = :run_last AND t.id = :run_llama3;
-- a row longer than max_length: dropped (counted) or truncated (counted)
SELECT sft_train('trun_data', 'trun_base', 'trun_drop', epochs => 1, max_length => 65) AS run_drop \gset
SELECT sft_train('trun_data', 'trun_base', 'trun_trunc', epochs => 1, max_length => 65,
                 options => '{"too_long": "truncate"}') AS run_trunc \gset
SELECT sft_wait(:run_drop), sft_wait(:run_trunc);
SELECT id = :run_drop AS dropping, rows_read, rows_used, rows_too_long, rows_truncated, tokens
  FROM sft_runs WHERE id IN (:run_drop, :run_trunc) ORDER BY id;

-- nothing usable: the run fails with the counts, and leaves no model behind
CREATE TABLE trun_empty (messages jsonb);
SELECT sft_train('trun_empty', 'trun_base', 'trun_nothing', epochs => 1, max_length => 128) AS run \gset
SELECT sft_wait(:run);
SELECT status, error FROM sft_runs WHERE id = :run;
INSERT INTO trun_empty SELECT NULL FROM generate_series(1, 3);
INSERT INTO trun_empty SELECT messages FROM trun_data LIMIT 5;
SELECT sft_train('trun_empty', 'trun_base', 'trun_nothing2', epochs => 1, max_length => 20) AS run \gset
SELECT sft_wait(:run);
SELECT status, error, rows_null FROM sft_runs WHERE id = :run;
-- a row that is not a training conversation stops the run, naming the row
INSERT INTO trun_empty VALUES ('[{"role": "user", "content": "no answer"}]');
SELECT sft_train('trun_empty', 'trun_base', 'trun_bad_row', epochs => 1, max_length => 128) AS run \gset
SELECT sft_wait(:run);
SELECT status, regexp_replace(error, 'row [0-9]+', 'row N') AS error FROM sft_runs WHERE id = :run;
-- a failed run holds its output name until it is dropped or resumed
DO $$ BEGIN
  PERFORM sft_train('trun_data', 'trun_base', 'trun_bad_row', max_length => 128);
EXCEPTION WHEN duplicate_object THEN
  RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
SELECT sft_run_drop(:run);
SELECT count(*) FROM sft_models WHERE name IN ('trun_nothing', 'trun_nothing2', 'trun_bad_row');

-- sft.max_memory counts the tokenized data: sft_train's check (before any row
-- is read) passes, the worker checks again with the same limit, stored with
-- the run, as the rows arrive and fails before the data outgrows it; nothing
-- stored is touched (the base model, other models, large objects)
CREATE TABLE trun_big AS
  SELECT n, sft_from_pair('Question ' || n, repeat('The sea is wide and the waves are high. ', 12)) AS messages
    FROM generate_series(1, 8000) n;
CREATE TEMP TABLE trun_mem_before AS
  SELECT (SELECT count(*) FROM pg_largeobject_metadata) AS los,
         (SELECT array_agg(name || ':' || weights ORDER BY name) FROM sft_models) AS models,
         sft_generate('trun_model', '[{"role": "user", "content": "What is the capital of France?"}]'::jsonb) AS answer;
SET sft.max_memory = '16MB';
SELECT sft_train('trun_big', 'trun_base', 'trun_mem_small', epochs => 1, max_length => 512, batch_size => 1,
                 options => '{"lr_schedule": "constant"}') AS run \gset
RESET sft.max_memory;
SET client_min_messages = error;	-- sft_wait's warning repeats the error, with figures
SELECT sft_wait(:run);
SET client_min_messages = warning;
SELECT status, max_memory_mb, rows_used,
       regexp_replace(error, '[0-9]+', 'N', 'g') AS error FROM sft_runs WHERE id = :run;
SELECT (SELECT count(*) FROM pg_largeobject_metadata) - los AS new_large_objects,
       (SELECT array_agg(name || ':' || weights ORDER BY name) FROM sft_models) = models AS models_unchanged,
       sft_generate('trun_model', '[{"role": "user", "content": "What is the capital of France?"}]'::jsonb) = answer
         AS same_answer
  FROM trun_mem_before;
SELECT sft_run_drop(:run);
-- the same limit holds a tenth of those rows: the data check is not a refusal of every run
CREATE VIEW trun_big_part AS SELECT * FROM trun_big WHERE n <= 800;
SET sft.max_memory = '16MB';
SELECT sft_train('trun_big_part', 'trun_base', 'trun_mem_ok', epochs => 1,
                 max_length => 512, batch_size => 1) AS run \gset
RESET sft.max_memory;
SELECT sft_wait(:run);
SELECT status, max_memory_mb, rows_used FROM sft_runs WHERE id = :run;

SELECT sft_model_drop(name) FROM sft_models WHERE name LIKE 'trun\_%' AND name <> 'trun_base' ORDER BY name;
SELECT count(*) AS checkpoints_left FROM sft_run_epochs e JOIN sft_run_table r ON r.id = e.run_id
 WHERE r.output LIKE 'trun\_%' AND e.checkpoint IS NOT NULL;
SELECT bool_and(sft_run_drop(id)) FROM sft_run_table WHERE output LIKE 'trun\_%';
SELECT sft_model_drop('trun_base');
SELECT (SELECT count(*) FROM pg_largeobject_metadata) - n AS orphaned_large_objects FROM trun_lo_before;
SELECT sft_tokenizer_drop('trun_tok');
