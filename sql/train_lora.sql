-- LoRA training: the "lora" and "checkpoint_activations" options checked up
-- front; a LoRA run memorises a small set and stores an adapter model (its
-- large object holds the adapter only); cancel + resume of a LoRA run with
-- dropout and checkpointing equals the uninterrupted run; keep => 'best';
-- training from an adapter continues it; checkpointing does not change a
-- full fine-tuning run.
SET client_min_messages = warning;
SET sft.threads = 1;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer FROM sft_tokenizer_load('tlora_tok', :'tokjson', :'tokcfg');
SELECT sft_model_create('tlora_init', 'tlora_tok', '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512}', 1);
-- a "pretrained" base: a frozen random one (std 0.02, tied LM head) cannot
-- express confident predictions whatever an adapter does
CREATE TABLE tlora_pre AS
  SELECT n, sft_from_pair('Question ' || n, 'Answer ' || n) AS messages FROM generate_series(1, 40) n;
SELECT sft_train('tlora_pre', 'tlora_init', 'tlora_base', epochs => 8, learning_rate => 0.01, max_length => 64, batch_size => 4,
                 options => '{"seed": 5}') AS pre \gset
SELECT sft_wait(:pre);
-- what the adapters learn: other answers, in words the base knows
CREATE TABLE tlora_data AS
  SELECT n, sft_from_pair('Question ' || n, 'Answer ' || (n + 20)) AS messages
    FROM generate_series(1, 8) n;
-- the workers of rolled-back runs find no row and leave: wait for that
CREATE FUNCTION tlora_wait_idle() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..3000 LOOP
    IF NOT EXISTS (SELECT FROM sft_progress) THEN RETURN true; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RETURN false;
END $$;
CREATE TEMP TABLE tlora_before AS
  SELECT (SELECT count(*) FROM sft_run_table) AS runs, (SELECT count(*) FROM pg_largeobject_metadata) AS los;

-- options checked before a run exists
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": 16}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": "all-linear"}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": []}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"rank": 8}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"r": 0}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"r": 8.5}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"r": "8"}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"r": 5000}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"alpha": 0}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"alpha": -16}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"alpha": "16"}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"dropout": 1}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"dropout": -0.1}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"rslora": 1}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"target_modules": "all"}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"target_modules": 7}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"target_modules": []}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"target_modules": ["q_proj", "lm_head"]}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"target_modules": ["q_proj", "q_proj"]}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"target_modules": ["q_proj", 3]}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"lora": {"target_modules": ["self_attn.q_proj"]}}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"checkpoint_activations": "yes"}');
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', options => '{"checkpoint_activations": 1}');
-- the memory estimate knows LoRA and checkpointing
SET sft.max_memory = '16MB';
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', max_length => 512, batch_size => 8);
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', max_length => 512, batch_size => 8,
                 options => '{"lora": {}, "checkpoint_activations": true}');
-- between the two: LoRA with checkpointing fits where full fine-tuning does not
SET sft.max_memory = '28MB';
BEGIN;
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_x', max_length => 512, batch_size => 8,
                 options => '{"lora": {}, "checkpoint_activations": true}') > 0 AS lora_fits;
ROLLBACK;
SELECT tlora_wait_idle();
RESET sft.max_memory;
SELECT (SELECT count(*) FROM sft_run_table) = runs AS no_runs, (SELECT count(*) FROM pg_largeobject_metadata) = los AS no_objects
  FROM tlora_before;

-- effective options: PEFT's defaults (r 8, alpha 8, dropout 0, q_proj + v_proj), names sorted
BEGIN;
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_defaults', options => '{"lora": {}}') AS run \gset
SELECT options->'lora' AS lora, options->'checkpoint_activations' AS ckpt FROM sft_runs WHERE id = :run;
ROLLBACK;
SELECT tlora_wait_idle();
BEGIN;
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_some', options => '{"lora": {"r": 4, "alpha": 12, "rslora": true, "dropout": 0.05, "target_modules": ["up_proj", "o_proj", "gate_proj"]}, "checkpoint_activations": true}') AS run \gset
SELECT options->'lora' AS lora, options->'checkpoint_activations' AS ckpt FROM sft_runs WHERE id = :run;
ROLLBACK;
SELECT tlora_wait_idle();
BEGIN;
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_all', options => '{"lora": {"target_modules": "all-linear"}, "lora": null}') AS run \gset
SELECT options->'lora' AS lora FROM sft_runs WHERE id = :run;
ROLLBACK;
SELECT tlora_wait_idle();

-- a LoRA run memorises the set; the result is an adapter model of the base
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_mem', epochs => 40, learning_rate => 0.01, max_length => 64, batch_size => 4,
                 options => '{"seed": 5, "lr_schedule": "constant", "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"}}') AS mem \gset
SELECT sft_wait(:mem);
SELECT status, error FROM sft_runs WHERE id = :mem;
SELECT e.train_loss < 0.75 * f.train_loss AS memorised
  FROM sft_run_epochs e, sft_run_epochs f WHERE e.run_id = :mem AND f.run_id = :mem AND e.epoch = 40 AND f.epoch = 1;
-- 2 layers x (A [8, in] + B [out, 8]) of q, k, v, o (32 x 32, 16 x 32, 16 x 32, 32 x 32) and gate, up, down (64 x 32, 32 x 64)
SELECT parent, run_id = :mem AS from_run, parameters, parameters = 2 * 8 * ((32 + 32) + (32 + 16) * 2 + (32 + 32) + (32 + 64) * 3) AS adapter_count,
       size_bytes < 100000 AS small, adapter->>'peft_type' AS peft_type, adapter->'r' AS r, adapter->'lora_alpha' AS alpha,
       adapter->'target_modules' AS targets, adapter->>'base_model_name_or_path' AS base
  FROM sft_models WHERE name = 'tlora_mem';
SELECT lo_get(weights) = lo_get(weights) AS readable, length(lo_get(weights)) = size_bytes AS lo_is_adapter
  FROM sft_models WHERE name = 'tlora_mem';
-- sft_loss and sft_eval evaluate the adapter (on its base): lower than the base on what it learnt
SELECT sft_loss('tlora_mem', messages) < sft_loss('tlora_base', messages) AS adapter_learnt
  FROM tlora_data WHERE n = 3;
SELECT a.loss < b.loss AS eval_adapter_lower, a.rows = 8 AS rows
  FROM sft_eval('tlora_mem', 'tlora_data') a, sft_eval('tlora_base', 'tlora_data') b;
-- the checkpoints of a LoRA run hold the adapter and its moments only
SELECT count(*) AS checkpoints, max(length(lo_get(checkpoint))) BETWEEN 3 * 4 * 8192 AND 3 * 4 * 8192 + 4096 AS adapter_sized
  FROM sft_run_epochs WHERE run_id = :mem AND checkpoint IS NOT NULL;

-- cancel + resume of a LoRA run (adapter dropout, residual dropout, checkpointing) = one uninterrupted run
CREATE FUNCTION tlora_wait_first_epoch(run bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..3000 LOOP
    IF EXISTS (SELECT FROM sft_run_epochs WHERE run_id = run) THEN RETURN true; END IF;
    IF NOT sft_run_active(run) THEN RETURN false; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RETURN false;
END $$;
CREATE TABLE tlora_big AS
  SELECT n, sft_from_pair('Question number ' || n, 'Answer number ' || n) AS messages FROM generate_series(1, 60) n;
\set lora_args 'epochs => 6, learning_rate => 0.01, max_length => 96, batch_size => 2, options => \'{"seed": 3, "dropout": 0.1, "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": "all-linear"}, "checkpoint_activations": true, "validation_fraction": 0.2, "keep": "best"}\''
SELECT sft_train('tlora_big', 'tlora_base', 'tlora_ref', :lora_args) AS ref \gset
SELECT sft_wait(:ref);
SELECT sft_train('tlora_big', 'tlora_base', 'tlora_cancelled', :lora_args) AS run \gset
SELECT tlora_wait_first_epoch(:run);
SELECT sft_cancel(:run);
SELECT status, epochs_done BETWEEN 1 AND 5 AS stopped_midway FROM sft_runs WHERE id = :run;
SELECT sft_resume(:run) = :run AS resumed;
SELECT sft_wait(:run);
SELECT status, error, attempts, epochs_done FROM sft_runs WHERE id = :run;
SELECT md5(lo_get(r.weights)) = md5(lo_get(c.weights)) AS same_adapter, r.parameters = c.parameters AS same_count
  FROM sft_models r, sft_models c WHERE r.name = 'tlora_ref' AND c.name = 'tlora_cancelled';
SELECT count(*) AS epochs, count(*) FILTER (WHERE r.train_loss = c.train_loss AND r.validation_loss = c.validation_loss) AS same_losses
  FROM sft_run_epochs r JOIN sft_run_epochs c USING (epoch) WHERE r.run_id = :ref AND c.run_id = :run;
-- keep => 'best': the stored adapter is the best epoch's checkpoint
SELECT best.epoch AS best_epoch, md5(lo_get(m.weights)) <> md5(lo_get(last.checkpoint)) OR best.epoch = 6 AS not_simply_last
  FROM sft_models m,
       (SELECT epoch FROM sft_run_epochs WHERE run_id = :ref ORDER BY validation_loss, epoch LIMIT 1) best,
       (SELECT checkpoint FROM sft_run_epochs WHERE run_id = :ref AND epoch = 6) last
 WHERE m.name = 'tlora_ref';

-- training from an adapter continues it (same settings; a different shape is refused)
SELECT sft_train('tlora_data', 'tlora_mem', 'tlora_x', options => '{"lora": {"r": 4}}');
SELECT sft_train('tlora_data', 'tlora_mem', 'tlora_more', epochs => 2, learning_rate => 0.01, max_length => 64, batch_size => 4,
                 options => '{"seed": 5, "lr_schedule": "constant"}') AS more \gset
SELECT sft_wait(:more);
SELECT status, error, options->'lora'->'r' AS r, options->'lora'->'target_modules' AS targets FROM sft_runs WHERE id = :more;
SELECT parent, adapter->'r' AS r FROM sft_models WHERE name = 'tlora_more';
-- it starts where tlora_mem ended, far below a fresh adapter's first epoch
SELECT m.train_loss < 0.8 * f.train_loss AS continued
  FROM sft_run_epochs m, sft_run_epochs f WHERE m.run_id = :more AND m.epoch = 1 AND f.run_id = :mem AND f.epoch = 1;

-- full fine-tuning with checkpoint_activations gives the same model bit for bit
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_full', epochs => 2, max_length => 64, batch_size => 4, options => '{"seed": 2, "dropout": 0.1}') AS f1 \gset
SELECT sft_wait(:f1);
SELECT sft_train('tlora_data', 'tlora_base', 'tlora_full_ckpt', epochs => 2, max_length => 64, batch_size => 4, options => '{"seed": 2, "dropout": 0.1, "checkpoint_activations": true}') AS f2 \gset
SELECT sft_wait(:f2);
SELECT md5(lo_get(a.weights)) = md5(lo_get(b.weights)) AS same_weights
  FROM sft_models a, sft_models b WHERE a.name = 'tlora_full' AND b.name = 'tlora_full_ckpt';
