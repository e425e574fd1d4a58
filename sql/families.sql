-- The model families beyond Llama: created from config.json keys, trained
-- (full fine-tuning) until they answer exactly what they saw, evaluated,
-- exported and imported back.  Shape-reduced, every family feature on.
SET client_min_messages = warning;
SET sft.threads = 1;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer FROM sft_tokenizer_load('fam_tok', :'tokjson', :'tokcfg');

CREATE TABLE fam_configs (family text PRIMARY KEY, config jsonb);
INSERT INTO fam_configs VALUES
  ('llama3', '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}}'),
  ('qwen2', '{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
    "vocab_size": 386, "max_position_embeddings": 512, "rope_theta": 1000000.0, "tie_word_embeddings": true,
    "use_sliding_window": false, "sliding_window": 32768, "max_window_layers": 21}'),
  ('qwen3', '{"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 12,
    "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512, "rope_theta": 1000000.0}'),
  ('smollm3', '{"model_type": "smollm3", "architectures": ["SmolLM3ForCausalLM"], "hidden_size": 32,
    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
    "vocab_size": 386, "max_position_embeddings": 512, "pretraining_tp": 2}'),
  ('gemma3', '{"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "hidden_size": 32,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 12,
    "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512, "sliding_window": 8,
    "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
    "query_pre_attn_scalar": 12, "final_logit_softcapping": 30.0}');
SELECT family, sft_model_create('fam_' || family, 'fam_tok', config, 1) AS parameters
  FROM fam_configs ORDER BY family;
-- the stored config is the family's config.json
SELECT f.family, m.config->>'model_type' AS model_type, m.config->'architectures'->>0 AS architecture,
       m.config->'rope_scaling'->>'rope_type' AS rope_type, m.config->'no_rope_layers' AS no_rope_layers,
       m.config->'layer_types' AS layer_types, m.config->>'sliding_window' AS sliding_window,
       m.config->>'tie_word_embeddings' AS tied
  FROM fam_configs f JOIN sft_models m ON m.name = 'fam_' || f.family ORDER BY f.family;

CREATE TABLE fam_qa (q text, a text);
INSERT INTO fam_qa VALUES
  ('What is the capital of France?', 'Paris is the capital.'),
  ('Write a short poem about the sea.', 'The sea is wide and the waves are high.');
CREATE TABLE fam_data AS
  SELECT n, sft_from_pair(q, a) AS messages FROM fam_qa, generate_series(1, 48) n;

-- full fine-tuning of each family: the run succeeds and the loss falls
CREATE TABLE fam_runs (family text, run bigint);
INSERT INTO fam_runs SELECT 'gemma3', sft_train('fam_data', 'fam_gemma3', 'fam_gemma3_tuned', epochs => 3,
  learning_rate => 0.01, max_length => 128, batch_size => 4, options => '{"lr_schedule": "constant"}');
SELECT sft_wait(run) FROM fam_runs WHERE family = 'gemma3';
INSERT INTO fam_runs SELECT 'llama3', sft_train('fam_data', 'fam_llama3', 'fam_llama3_tuned', epochs => 3,
  learning_rate => 0.01, max_length => 128, batch_size => 4, options => '{"lr_schedule": "constant"}');
SELECT sft_wait(run) FROM fam_runs WHERE family = 'llama3';
INSERT INTO fam_runs SELECT 'qwen2', sft_train('fam_data', 'fam_qwen2', 'fam_qwen2_tuned', epochs => 3,
  learning_rate => 0.01, max_length => 128, batch_size => 4, options => '{"lr_schedule": "constant"}');
SELECT sft_wait(run) FROM fam_runs WHERE family = 'qwen2';
INSERT INTO fam_runs SELECT 'qwen3', sft_train('fam_data', 'fam_qwen3', 'fam_qwen3_tuned', epochs => 3,
  learning_rate => 0.01, max_length => 128, batch_size => 4, options => '{"lr_schedule": "constant"}');
SELECT sft_wait(run) FROM fam_runs WHERE family = 'qwen3';
INSERT INTO fam_runs SELECT 'smollm3', sft_train('fam_data', 'fam_smollm3', 'fam_smollm3_tuned', epochs => 3,
  learning_rate => 0.01, max_length => 128, batch_size => 4, options => '{"lr_schedule": "constant"}');
SELECT sft_wait(run) FROM fam_runs WHERE family = 'smollm3';
SELECT f.family, r.status, r.error, e.train_loss < 0.5 AS loss_below_half
  FROM fam_runs f JOIN sft_runs r ON r.id = f.run
  JOIN sft_run_epochs e ON e.run_id = f.run AND e.epoch = 3 ORDER BY f.family;
-- every family memorised both answers, greedily, through its KV cache
SELECT f.family, q.q,
       sft_generate('fam_' || f.family || '_tuned',
                    jsonb_build_array(jsonb_build_object('role', 'user', 'content', q.q)),
                    max_new_tokens => 24) = q.a AS learned
  FROM fam_configs f, fam_qa q ORDER BY f.family, q.q;
-- batched decoding (both questions in one call) gives the same replies
SELECT f.family, b.ordinality, b.reply = q.a AS learned
  FROM fam_configs f,
       LATERAL sft_generate_batch('fam_' || f.family || '_tuned',
         ARRAY(SELECT jsonb_build_array(jsonb_build_object('role', 'user', 'content', q)) FROM fam_qa ORDER BY q),
         24) b
  JOIN (SELECT row_number() OVER (ORDER BY q) AS n, a FROM fam_qa) q ON q.n = b.ordinality
  ORDER BY f.family, b.ordinality;
-- evaluation: the tuned model's loss on its data is lower than the base's
SELECT f.family, t.rows, t.loss < b.loss / 4 AS tuned_is_better
  FROM fam_configs f,
       LATERAL sft_eval('fam_' || f.family || '_tuned', 'fam_data', 128) t,
       LATERAL sft_eval('fam_' || f.family, 'fam_data', 128) b ORDER BY f.family;

-- export and import back: same weights, same config
SELECT current_setting('data_directory') || '/sft_regress_families' AS fam_dir \gset
SELECT f.family, array_length(sft_model_export('fam_' || f.family || '_tuned',
                                               :'fam_dir' || '/' || f.family), 1) AS files
  FROM fam_configs f ORDER BY f.family;
SELECT f.family, sft_model_import('fam_' || f.family || '_back', :'fam_dir' || '/' || f.family) AS parameters
  FROM fam_configs f ORDER BY f.family;
SELECT f.family, b.config = t.config AS same_config,
       lo_get(b.weights) = lo_get(t.weights) AS same_weights
  FROM fam_configs f
  JOIN sft_models t ON t.name = 'fam_' || f.family || '_tuned'
  JOIN sft_models b ON b.name = 'fam_' || f.family || '_back' ORDER BY f.family;

-- refused by name
SELECT sft_model_create('fam_x', 'fam_tok', jsonb_set((SELECT config FROM fam_configs WHERE family = 'qwen2'),
                        '{use_sliding_window}', 'true'), 1);
SELECT sft_model_create('fam_x', 'fam_tok', jsonb_set((SELECT config FROM fam_configs WHERE family = 'gemma3'),
                        '{attn_logit_softcapping}', '50'), 1);
SELECT sft_model_create('fam_x', 'fam_tok', jsonb_set((SELECT config FROM fam_configs WHERE family = 'llama3'),
                        '{rope_scaling,rope_type}', '"yarn"'), 1);
SELECT sft_model_create('fam_x', 'fam_tok', jsonb_set((SELECT config FROM fam_configs WHERE family = 'qwen3'),
                        '{model_type}', '"phi3"'), 1);

SELECT sft_model_drop(name) FROM sft_models WHERE name LIKE 'fam\_%' ORDER BY name;
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'fam\_%' ORDER BY name;
DROP TABLE fam_configs, fam_qa, fam_data, fam_runs;
