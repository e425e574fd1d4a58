-- sft_model_export(..., format => 'gguf'): NAME.gguf for llama.cpp and an
-- Ollama Modelfile, every dtype, the option and permission errors, and that
-- a refused or failed export leaves no file behind.  (llama.cpp itself
-- loads and runs these files in test/suites/gguf_llamacpp.sh.)
SET client_min_messages = warning;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
\set spjson `cat test/fixtures/tiny_sp.json`
\set spcfg `cat test/fixtures/tiny_config_llama2.json`
SELECT tokenizer, vocab_size FROM sft_tokenizer_load('gguf_tok', :'tokjson', :'tokcfg');
SELECT tokenizer, vocab_size FROM sft_tokenizer_load('gguf_sp', :'spjson', :'spcfg');
\set cfg '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 386, "max_position_embeddings": 128, "tie_word_embeddings": true}'
SELECT sft_model_create('gguf_a', 'gguf_tok', :'cfg', 7);
SELECT sft_model_create('gguf_sp', 'gguf_sp', jsonb_set(jsonb_set(:'cfg'::jsonb, '{vocab_size}', '450'), '{tie_word_embeddings}', 'false'), 7);
SELECT sft_model_set_system('gguf_a', 'You are a tiny test model.');
SELECT current_setting('data_directory') || '/sft_regress_gguf' AS dir \gset

-- every dtype: the files written, GGUF magic and version, sizes in order
-- (f32 > f16 = bf16 > q8_0), no temporary file left
CREATE TEMP TABLE gguf_sizes (dtype text, bytes bigint);
SELECT (SELECT array_agg(regexp_replace(f, '^.*/', '') ORDER BY 1) FROM unnest(files) f) AS files
  FROM sft_model_export('gguf_a', :'dir', 'gguf', 'f32') AS files;
INSERT INTO gguf_sizes SELECT 'f32', size FROM pg_stat_file(:'dir' || '/gguf_a.gguf');
SELECT encode(substring(pg_read_binary_file(:'dir' || '/gguf_a.gguf') FROM 1 FOR 8), 'hex') AS magic_version;
SELECT array_length(sft_model_export('gguf_a', :'dir', 'gguf'), 1) AS default_dtype_files;
INSERT INTO gguf_sizes SELECT 'f16', size FROM pg_stat_file(:'dir' || '/gguf_a.gguf');
SELECT array_length(sft_model_export('gguf_a', :'dir', 'gguf', 'bf16'), 1) AS bf16_files;
INSERT INTO gguf_sizes SELECT 'bf16', size FROM pg_stat_file(:'dir' || '/gguf_a.gguf');
SELECT array_length(sft_model_export('gguf_a', :'dir', format => 'gguf', dtype => 'q8_0'), 1) AS q8_0_files;
INSERT INTO gguf_sizes SELECT 'q8_0', size FROM pg_stat_file(:'dir' || '/gguf_a.gguf');
SELECT (SELECT bytes FROM gguf_sizes WHERE dtype = 'f32') > (SELECT bytes FROM gguf_sizes WHERE dtype = 'f16') AS f32_larger,
       (SELECT bytes FROM gguf_sizes WHERE dtype = 'f16') = (SELECT bytes FROM gguf_sizes WHERE dtype = 'bf16') AS f16_bf16_same,
       (SELECT bytes FROM gguf_sizes WHERE dtype = 'bf16') > (SELECT bytes FROM gguf_sizes WHERE dtype = 'q8_0') AS q8_0_smallest;
SELECT f FROM pg_ls_dir(:'dir') f ORDER BY 1;
-- the Modelfile: FROM, the template's end-of-turn and eos tokens as stops, the model's system prompt
SELECT pg_read_file(:'dir' || '/Modelfile');
-- the chat template and tokenizer metadata are in the file
SELECT position('tokenizer.chat_template'::bytea IN pg_read_binary_file(:'dir' || '/gguf_a.gguf')) > 0 AS has_template,
       position('gpt-2'::bytea IN pg_read_binary_file(:'dir' || '/gguf_a.gguf')) > 0 AS pre_gpt2,
       position('tokenizer.ggml.merges'::bytea IN pg_read_binary_file(:'dir' || '/gguf_a.gguf')) > 0 AS has_merges;
-- SentencePiece, untied, no system prompt
SELECT (SELECT array_agg(regexp_replace(f, '^.*/', '') ORDER BY 1) FROM unnest(files) f) AS files
  FROM sft_model_export('gguf_sp', :'dir' || '/sp', 'gguf', 'q8_0') AS files;
SELECT pg_read_file(:'dir' || '/sp/Modelfile');
SELECT position('tokenizer.ggml.scores'::bytea IN pg_read_binary_file(:'dir' || '/sp/gguf_sp.gguf')) > 0 AS has_scores,
       -- the tensor name "output.weight" as GGUF stores it: u64 length 13, then the bytes
       position('\x0d00000000000000'::bytea || 'output.weight'::bytea IN pg_read_binary_file(:'dir' || '/sp/gguf_sp.gguf')) > 0 AS untied_has_output,
       position('\x0d00000000000000'::bytea || 'output.weight'::bytea IN pg_read_binary_file(:'dir' || '/gguf_a.gguf')) > 0 AS tied_has_output;

-- the HF directory stays the default format
SELECT array_length(sft_model_export('gguf_a', :'dir' || '/hf'), 1) AS hf_files;
SELECT array_length(sft_model_export('gguf_a', :'dir' || '/hf', 'hf', 'f32'), 1) AS hf_f32_files;

-- bad options
SELECT sft_model_export('gguf_a', :'dir', 'gguf', 'q4_0');
SELECT sft_model_export('gguf_a', :'dir', 'onnx');
SELECT sft_model_export('gguf_a', :'dir', NULL);
SELECT sft_model_export('gguf_a', :'dir', 'hf', 'f16');
SELECT sft_model_export('gguf_a', 'relative/dir', 'gguf');
SELECT sft_model_export('no_such_model', :'dir', 'gguf');
-- q8_0 needs rows of whole 32-value blocks: hidden_size 48 is refused, and nothing is left
SELECT sft_model_create('gguf_odd', 'gguf_tok', jsonb_set(:'cfg'::jsonb, '{hidden_size}', '48'), 1);
SELECT sft_model_export('gguf_odd', :'dir' || '/odd', 'gguf', 'q8_0');
SELECT f FROM pg_ls_dir(:'dir' || '/odd') f ORDER BY 1;
SELECT array_length(sft_model_export('gguf_odd', :'dir' || '/odd', 'gguf', 'f16'), 1) AS odd_f16_files;
-- a name that cannot be a file name
SELECT sft_model_create('../gguf_escape', 'gguf_tok', :'cfg', 1);
SELECT sft_model_export('../gguf_escape', :'dir', 'gguf');
-- a system prompt a Modelfile cannot quote is refused before any file is written
SELECT sft_model_create('gguf_quote', 'gguf_tok', :'cfg', 1);
SELECT sft_model_set_system('gguf_quote', 'Say """ often.');
SELECT sft_model_export('gguf_quote', :'dir' || '/quote', 'gguf');
SELECT f FROM pg_ls_dir(:'dir' || '/quote') f ORDER BY 1;

-- a tokenizer with two ids of the same text (llama.cpp's loader asserts) is refused
SELECT tokenizer FROM sft_tokenizer_load('gguf_dup',
  '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "decoder": {"type": "ByteLevel"},
    "added_tokens": [{"id": 3, "content": "ab", "special": false}]}');
SELECT sft_model_create('gguf_dup', 'gguf_dup', jsonb_set(:'cfg'::jsonb, '{vocab_size}', '4'), 1);
SELECT sft_model_export('gguf_dup', :'dir' || '/dup', 'gguf');
SELECT f FROM pg_ls_dir(:'dir' || '/dup') f ORDER BY 1;
-- a pre-tokenizer llama.cpp has no equivalent for
SELECT tokenizer FROM sft_tokenizer_load('gguf_prefix',
  '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "use_regex": true},
    "decoder": {"type": "ByteLevel"}}');
SELECT sft_model_create('gguf_prefix', 'gguf_prefix', jsonb_set(:'cfg'::jsonb, '{vocab_size}', '3'), 1);
SELECT sft_model_export('gguf_prefix', :'dir' || '/dup', 'gguf');

-- permissions: the owner only, and pg_write_server_files
CREATE ROLE regress_sft_gguf_owner LOGIN;
CREATE ROLE regress_sft_gguf_writer LOGIN;
GRANT pg_write_server_files TO regress_sft_gguf_writer;
SET ROLE regress_sft_gguf_owner;
SELECT sft_model_create('gguf_owned', 'gguf_tok', :'cfg', 1);
SELECT sft_model_export('gguf_owned', :'dir' || '/owned', 'gguf');
SET ROLE regress_sft_gguf_writer;
SELECT sft_model_export('gguf_owned', :'dir' || '/owned', 'gguf');
RESET ROLE;

-- clean up
SELECT sft_model_drop(name) FROM sft_models WHERE name LIKE 'gguf%' OR name LIKE '../gguf%' ORDER BY name;
SELECT sft_tokenizer_drop(t) FROM unnest(ARRAY['gguf_tok', 'gguf_sp', 'gguf_dup', 'gguf_prefix']) t;
DROP ROLE regress_sft_gguf_owner;
DROP ROLE regress_sft_gguf_writer;
