-- Evaluation from SQL: sft_loss per conversation, sft_eval over a relation
-- (token-weighted, read as the caller), agreement with training's losses.
SET client_min_messages = warning;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer FROM sft_tokenizer_load('eval_tok', :'tokjson', :'tokcfg');
\set cfg '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512, "tie_word_embeddings": false}'
SELECT sft_model_create('eval_m', 'eval_tok', :'cfg', 3) > 0 AS created;
RESET client_min_messages;

CREATE TABLE eval_rows (id int PRIMARY KEY, messages jsonb);
INSERT INTO eval_rows VALUES
  (1, sft_from_pair('What is the capital of France?', 'Paris is the capital.')),
  (2, sft_from_pair('Hello!', 'Hi')),
  (3, '[{"role": "user", "content": "Write a short poem about the sea."},
        {"role": "assistant", "content": "The sea is wide and the waves are high."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "Sure, here it is."}]');
-- targets per row: loss-mask ones after the first token (nothing predicts the first)
CREATE TEMP VIEW eval_targets AS
  SELECT id, messages,
         (SELECT count(*) FROM unnest((sft_encode('eval_tok', messages)).loss_mask) WITH ORDINALITY u(b, i)
           WHERE b = 1 AND i > 1) AS targets,
         (SELECT count(*) FROM unnest((sft_encode('eval_tok', messages, train_on => 'last_assistant')).loss_mask) WITH ORDINALITY u(b, i)
           WHERE b = 1 AND i > 1) AS last_targets
    FROM eval_rows;
SELECT id, targets, last_targets FROM eval_targets ORDER BY id;

-- ---------------------------------------------------------------------------
-- sft_loss: a mean NLL in nats over the assistant tokens; repeatable
-- ---------------------------------------------------------------------------
SELECT id, sft_loss('eval_m', messages) BETWEEN 4 AND 8 AS near_uniform_for_random_weights,
       sft_loss('eval_m', messages) = sft_loss('eval_m', messages) AS repeatable
  FROM eval_rows ORDER BY id;
-- uniform over 386 tokens would be ln(386) = 5.96; a random model is close to it
SELECT abs(avg(sft_loss('eval_m', messages)) - ln(386)) < 0.5 AS close_to_uniform FROM eval_rows;
-- the training mask: only the last reply with last_assistant
SELECT sft_loss('eval_m', messages, 'last_assistant') <> sft_loss('eval_m', messages) AS last_reply_differs
  FROM eval_rows WHERE id = 3;
SELECT sft_loss('eval_m', messages, 'last_assistant') = sft_loss('eval_m', messages) AS one_reply_same
  FROM eval_rows WHERE id = 1;
-- STRICT: NULL in, NULL out
SELECT sft_loss('eval_m', NULL) IS NULL AS null_messages, sft_loss(NULL, '[]') IS NULL AS null_model;
-- bad input
SELECT sft_loss('no_such_model', messages) FROM eval_rows WHERE id = 1;
SELECT sft_loss('eval_m', '[{"role": "user", "content": "Hi"}]');
SELECT sft_loss('eval_m', '[]');
SELECT sft_loss('eval_m', '"text"');
SELECT sft_loss('eval_m', messages, 'everything') FROM eval_rows WHERE id = 1;
SELECT sft_loss('eval_m', sft_from_pair('Hi', repeat('sea ', 600)));

-- ---------------------------------------------------------------------------
-- sft_eval: token-weighted over the whole source
-- ---------------------------------------------------------------------------
SELECT rows, tokens, tokens = (SELECT sum(targets) FROM eval_targets) AS tokens_are_targets
  FROM sft_eval('eval_m', 'eval_rows');
-- loss = sum(loss_i * targets_i) / sum(targets_i), not the mean of row losses
WITH per_row AS (SELECT sft_loss('eval_m', messages) AS loss, targets FROM eval_targets),
     e AS (SELECT * FROM sft_eval('eval_m', 'eval_rows'))
SELECT abs(e.loss - sum(per_row.loss * per_row.targets) / sum(per_row.targets)) < 1e-6 AS token_weighted,
       abs(e.loss - avg(per_row.loss)) > 1e-6 AS not_row_weighted,
       abs(e.perplexity - exp(e.loss)) < 1e-9 AS perplexity_is_exp_loss
  FROM per_row, e GROUP BY e.loss, e.perplexity;
WITH per_row AS (SELECT sft_loss('eval_m', messages, 'last_assistant') AS loss, last_targets AS targets FROM eval_targets),
     e AS (SELECT * FROM sft_eval('eval_m', 'eval_rows', train_on => 'last_assistant'))
SELECT e.tokens = sum(per_row.targets) AS last_tokens,
       abs(e.loss - sum(per_row.loss * per_row.targets) / sum(per_row.targets)) < 1e-6 AS last_token_weighted
  FROM per_row, e GROUP BY e.loss, e.tokens;
-- packing rows into micro-batches does not change the result
SELECT max(array_length((sft_encode('eval_tok', messages)).input_ids, 1)) < 100 AS rows_under_100_tokens FROM eval_rows;
SELECT abs(a.loss - b.loss) < 1e-6 AS same_in_other_batches, a.tokens = b.tokens AS same_tokens
  FROM sft_eval('eval_m', 'eval_rows', max_length => 512) a, sft_eval('eval_m', 'eval_rows', max_length => 100) b;
-- a single row: sft_eval is sft_loss
CREATE TABLE eval_one AS SELECT messages FROM eval_rows WHERE id = 3;
SELECT abs((SELECT loss FROM sft_eval('eval_m', 'eval_one')) - sft_loss('eval_m', messages)) < 1e-9 AS one_row_is_sft_loss
  FROM eval_one;
-- rows training would skip: NULL, too long (dropped, or cut with too_long => 'truncate'), no target left
CREATE TABLE eval_mixed (messages jsonb);
INSERT INTO eval_mixed SELECT messages FROM eval_rows;
INSERT INTO eval_mixed VALUES (NULL), (sft_from_pair('Hi', repeat('sea ', 120)));
SELECT rows, tokens FROM sft_eval('eval_m', 'eval_mixed', max_length => 100);
SELECT rows, tokens FROM sft_eval('eval_m', 'eval_mixed', max_length => 100, too_long => 'truncate');
SELECT rows FROM sft_eval('eval_m', 'eval_mixed', max_length => 44, too_long => 'truncate');
-- views, schemas, quoted names, another column name
CREATE SCHEMA eval_s;
CREATE TABLE eval_s."Mixed Case" (conv jsonb);
INSERT INTO eval_s."Mixed Case" SELECT messages FROM eval_rows;
CREATE VIEW eval_view AS SELECT messages FROM eval_rows WHERE id <> 2;
SELECT rows, tokens FROM sft_eval('eval_m', 'eval_view');
SELECT rows FROM sft_eval('eval_m', 'eval_s."Mixed Case"', messages_column => 'conv');
SET search_path = eval_s, public;
SELECT rows FROM sft_eval('eval_m', '"Mixed Case"', messages_column => 'conv');
RESET search_path;
-- an empty source has no loss
CREATE TABLE eval_empty (messages jsonb);
SELECT * FROM sft_eval('eval_m', 'eval_empty');
-- bad input
SELECT * FROM sft_eval('no_such_model', 'eval_rows');
SELECT * FROM sft_eval('eval_m', 'no_such_table');
SELECT * FROM sft_eval('eval_m', 'eval_rows', messages_column => 'nope');
SELECT * FROM sft_eval('eval_m', 'eval_rows', messages_column => 'id');
CREATE SEQUENCE eval_seq;
SELECT * FROM sft_eval('eval_m', 'eval_seq');
SELECT * FROM sft_eval('eval_m', 'eval_rows; DROP TABLE eval_rows');
SELECT * FROM sft_eval('eval_m', 'eval_rows', max_length => 1);
SELECT * FROM sft_eval('eval_m', 'eval_rows', max_length => 513);
SELECT * FROM sft_eval('eval_m', 'eval_rows', train_on => 'all');
SELECT * FROM sft_eval('eval_m', 'eval_rows', too_long => 'skip');
SELECT * FROM sft_eval(NULL, 'eval_rows');
SELECT * FROM sft_eval('eval_m', NULL);
SELECT * FROM sft_eval('eval_m', 'eval_rows', NULL);
SELECT * FROM sft_eval('eval_m', 'eval_rows', messages_column => NULL);
INSERT INTO eval_mixed VALUES ('[{"role": "user", "content": "no answer"}]');
SELECT * FROM sft_eval('eval_m', 'eval_mixed');
SELECT model, in_use FROM sft_model_cache() WHERE model = 'eval_m';

-- ---------------------------------------------------------------------------
-- Read as the caller: privileges and row-level security apply
-- ---------------------------------------------------------------------------
CREATE ROLE eval_reader;
DO $$ BEGIN
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO eval_reader', (SELECT weights FROM sft_models WHERE name = 'eval_m'));
END $$;
SET ROLE eval_reader;
SELECT * FROM sft_eval('eval_m', 'eval_rows');
RESET ROLE;
GRANT SELECT (messages) ON eval_rows TO eval_reader;
SET ROLE eval_reader;
SELECT rows FROM sft_eval('eval_m', 'eval_rows');
RESET ROLE;
-- a view owned by someone who may read: the view's owner's rights, as in any query
GRANT SELECT ON eval_view TO eval_reader;
ALTER TABLE eval_rows ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_only_short ON eval_rows FOR SELECT TO eval_reader USING (id = 2);
SELECT targets AS row_2_targets FROM eval_targets WHERE id = 2 \gset
SET ROLE eval_reader;
SELECT rows, tokens = :row_2_targets AS only_row_2 FROM sft_eval('eval_m', 'eval_rows');
SELECT rows FROM sft_eval('eval_m', 'eval_view') AS view_through_policy;
RESET ROLE;
SELECT rows FROM sft_eval('eval_m', 'eval_rows') AS superuser_sees_all;

-- ---------------------------------------------------------------------------
-- Agreement with training: the first logged step loss of a one-row run is
-- sft_loss of that row on the base model; the validation loss of the last
-- epoch is sft_eval of the output model over the validation relation.
-- ---------------------------------------------------------------------------
CREATE TABLE eval_train AS SELECT messages FROM eval_rows WHERE id = 1;
CREATE TABLE eval_valid AS SELECT messages FROM eval_rows WHERE id IN (2, 3);
SET client_min_messages = warning;
SELECT sft_train('eval_train', 'eval_m', 'eval_trained', epochs => 2, learning_rate => 0.01,
                 max_length => 512, batch_size => 1,
                 options => '{"log_every": 1, "validation": "eval_valid", "lr_schedule": "constant"}') AS run \gset
SELECT set_config('eval.run', :'run', false) IS NOT NULL AS noted;
SELECT sft_wait(:run);
-- the worker may still be exiting: let its slot go before later tests start runs
DO $$ BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN NOT sft_run_active(current_setting('eval.run')::bigint);
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
RESET client_min_messages;
SELECT abs(loss - (SELECT sft_loss('eval_m', messages) FROM eval_train)) < 1e-5 AS step_1_loss_is_sft_loss
  FROM sft_run_log WHERE run_id = :run AND step = 1;
SELECT epoch, abs(validation_loss - (SELECT loss FROM sft_eval('eval_trained', 'eval_valid'))) < 1e-5 AS validation_is_sft_eval
  FROM sft_run_epochs WHERE run_id = :run AND epoch = 2;
SELECT (SELECT loss FROM sft_eval('eval_trained', 'eval_train')) < (SELECT loss FROM sft_eval('eval_m', 'eval_train')) AS trained_row_improves;

SET client_min_messages = warning;
DROP TABLE eval_rows, eval_one, eval_mixed, eval_empty, eval_train, eval_valid CASCADE;
DROP SCHEMA eval_s CASCADE;
DROP SEQUENCE eval_seq;
SELECT sft_model_drop(name) FROM sft_models WHERE name IN ('eval_m', 'eval_trained') ORDER BY name;
DROP OWNED BY eval_reader;
DROP ROLE eval_reader;
SELECT sft_tokenizer_drop('eval_tok');
