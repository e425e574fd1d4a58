-- The demo's model: a small Llama (about 0.8M parameters) over the byte
-- tokenizer, trained from scratch on demo_train in a background worker,
-- keeping the epoch with the lowest validation loss.  Answers to the same
-- held-out questions before and after, and the accuracy of each skill.
\if :{?epochs} \else \set epochs 6 \endif
\if :{?learning_rate} \else \set learning_rate 3e-3 \endif
\if :{?batch_size} \else \set batch_size 32 \endif
\if :{?chart} \else \set chart /tmp/sft-demo-loss.svg \endif

SELECT sft_model_create('pebble-base', 'pebble-bytes', '{
    "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 384, "vocab_size": 259,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000,
    "tie_word_embeddings": true}', seed => 42) AS parameters;

-- Before training: the held-out questions (greedy decoding).  Matrices this
-- small decode fastest on one thread.
SET sft.threads = 1;
CREATE TABLE demo_answers (model text, skill text, question text, expected text, answer text,
                           PRIMARY KEY (model, question));
INSERT INTO demo_answers
SELECT 'before', skill, question, answer, sft_generate('pebble-base', question, max_new_tokens => 80)
FROM demo_test;

-- Train in the background: sft_train returns the run id at once.  Training
-- uses every core (sft.threads 0), taken when the run starts.
RESET sft.threads;
SELECT sft_train('demo_train', base => 'pebble-base', output => 'pebble',
                 epochs => :epochs, learning_rate => :learning_rate, max_length => 512,
                 batch_size => :batch_size,
                 options => '{"lr_schedule": "cosine", "warmup_ratio": 0.05, "weight_decay": 0.01,
                              "validation": "demo_validation", "keep": "best",
                              "log_every": 10, "seed": 42}') AS run
\gset
-- Any session can watch it.
SELECT pg_sleep(10);
SELECT run, phase, epoch, epochs, step, steps, round(loss::numeric, 3) AS loss,
       round(tokens_per_s) AS tokens_per_s, date_trunc('second', eta) AS eta
FROM sft_progress;
-- Wait for the end; a NOTICE every few seconds shows it moving.
SELECT sft_wait(:run);

SELECT id, status, rows_used, tokens, steps_done, round(final_loss::numeric, 4) AS final_loss,
       date_trunc('second', finished - started) AS took, error
FROM sft_runs WHERE id = :run;
SELECT epoch, step, round(train_loss::numeric, 4) AS train_loss,
       round(validation_loss::numeric, 4) AS validation_loss
FROM sft_run_epochs WHERE run_id = :run ORDER BY epoch;
SELECT sft_sparkline(ARRAY(SELECT loss FROM sft_run_log WHERE run_id = :run ORDER BY step)) AS train_loss_curve;
SELECT name, parent, run_id, parameters FROM sft_models WHERE name = 'pebble';

-- After training: the same questions.
SET sft.threads = 1;
INSERT INTO demo_answers
SELECT 'after', skill, question, answer, sft_generate('pebble', question, max_new_tokens => 80)
FROM demo_test;

SELECT sft_generate('pebble', 'What is your name?') AS what_is_your_name;
SELECT sft_generate('pebble', 'Who made you?') AS who_made_you;

-- Two held-out questions per skill, before and after.
-- (a newline shows as ⏎, other control characters as �)
SELECT b.skill, b.question, b.expected,
       left(regexp_replace(replace(b.answer, E'\n', '⏎'), '[[:cntrl:]]', '�', 'g'), 24) AS before,
       regexp_replace(replace(a.answer, E'\n', '⏎'), '[[:cntrl:]]', '�', 'g') AS after
FROM demo_answers b JOIN demo_answers a USING (question)
WHERE b.model = 'before' AND a.model = 'after'
  AND b.question IN (SELECT question FROM (
        SELECT question, row_number() OVER (PARTITION BY skill ORDER BY question) AS n FROM demo_test) s
        WHERE n <= 2)
ORDER BY b.skill, b.question;

-- Held-out accuracy per skill: the answer must be exactly the expected one.
SELECT skill, count(*) / 2 AS questions,
       round(100.0 * count(*) FILTER (WHERE model = 'before' AND trim(answer) = expected)
             / count(*) FILTER (WHERE model = 'before')) AS before_pct,
       round(100.0 * count(*) FILTER (WHERE model = 'after' AND trim(answer) = expected)
             / count(*) FILTER (WHERE model = 'after')) AS after_pct
FROM demo_answers GROUP BY skill ORDER BY skill;

-- The loss chart, as an SVG file a browser shows as is.
\pset format unaligned
\pset tuples_only on
\o :chart
SELECT sft_loss_chart(:run);
\o
\pset format aligned
\pset tuples_only off
\echo loss chart written to :chart
