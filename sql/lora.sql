-- LoRA adapters as models: PEFT import (base named), export (byte-exact),
-- merge, generation through the shared base, drop rules, privileges.
-- The PEFT files are written here in SQL (lo_export of bytes built below).
SET client_min_messages = warning;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
SELECT tokenizer FROM sft_tokenizer_load('lora_tok', :'tokjson', :'tokcfg');
\set cfg '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 128, "tie_word_embeddings": true}'
SELECT sft_model_create('lora_base', 'lora_tok', :'cfg', 3);
SELECT current_setting('data_directory') || '/sft_regress_lora' AS dir \gset

SELECT set_config('lora.dir', :'dir', false) IS NOT NULL AS remembered;
-- run a statement; its error (SQLSTATE, message, hint) with the directory
-- shown as $DIR and large object OIDs as N
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  msg text;
  hint text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
  RETURN regexp_replace(replace(SQLSTATE || ': ' || msg || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END,
                                current_setting('lora.dir'), '$DIR'), 'LARGE OBJECT \d+', 'LARGE OBJECT N');
END $$;
-- fp32 little-endian bytes of values
CREATE FUNCTION pg_temp.f32le(v float4[]) RETURNS bytea LANGUAGE sql AS $$
  SELECT coalesce(string_agg(substring(b FROM 4 FOR 1) || substring(b FROM 3 FOR 1) ||
                             substring(b FROM 2 FOR 1) || substring(b FROM 1 FOR 1), ''::bytea ORDER BY i), ''::bytea)
    FROM (SELECT i, float4send(v[i]) AS b FROM generate_subscripts(v, 1) i) s $$;
-- a tensor [a, b] of values 0.3 sin(k i), as the safetensors builder takes it
CREATE FUNCTION pg_temp.t(name text, a int, b int, k float8) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('name', name, 'shape', jsonb_build_array(a, b),
                            'values', (SELECT jsonb_agg(0.3 * sin(k * i)) FROM generate_series(1, a * b) i)) $$;
-- a safetensors file as the safetensors library lays one out: metadata
-- {"format":"pt"} first, then the tensors sorted by name, compact JSON,
-- header padded with spaces to 8 bytes, data back to back
CREATE FUNCTION pg_temp.safetensors(tensors jsonb) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  header text := '{"__metadata__":{"format":"pt"}';
  data bytea := '';
  t jsonb;
  b bytea;
  off bigint := 0;
BEGIN
  FOR t IN SELECT e FROM jsonb_array_elements(tensors) e ORDER BY e->>'name' COLLATE "C" LOOP
    b := pg_temp.f32le(ARRAY(SELECT x::float4 FROM jsonb_array_elements_text(t->'values') x));
    header := header || format(',"%s":{"dtype":"F32","shape":%s,"data_offsets":[%s,%s]}',
                               t->>'name', replace(t->>'shape', ' ', ''), off, off + length(b));
    off := off + length(b);
    data := data || b;
  END LOOP;
  header := header || '}';
  header := header || repeat(' ', (8 - (8 + length(header)) % 8) % 8);
  b := int8send(length(header));
  RETURN substring(b FROM 8 FOR 1) || substring(b FROM 7 FOR 1) || substring(b FROM 6 FOR 1) ||
         substring(b FROM 5 FOR 1) || substring(b FROM 4 FOR 1) || substring(b FROM 3 FOR 1) ||
         substring(b FROM 2 FOR 1) || substring(b FROM 1 FOR 1) || convert_to(header, 'UTF8') || data;
END $$;
CREATE FUNCTION pg_temp.write_file(path text, data bytea) RETURNS void LANGUAGE plpgsql AS $$
DECLARE o oid := lo_from_bytea(0, data);
BEGIN
  PERFORM lo_export(o, path);
  PERFORM lo_unlink(o);
END $$;
-- a PEFT directory: adapter_config.json and adapter_model.safetensors
CREATE FUNCTION pg_temp.peft(dir text, config jsonb, tensors jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- exporting the base makes the directory (and shows that adapter_config.json
  -- decides: transformers too loads a directory holding one as an adapter)
  PERFORM sft_model_export('lora_base', dir);
  PERFORM pg_temp.write_file(dir || '/adapter_config.json', convert_to(config::text, 'UTF8'));
  PERFORM pg_temp.write_file(dir || '/adapter_model.safetensors', pg_temp.safetensors(tensors));
END $$;
\set P 'base_model.model.model.layers.'
-- r = 2 on q_proj [32, 32], gate_proj and up_proj [64, 32] and down_proj
-- [32, 64] of both layers, alpha 8: s = 4 (the MLP's adapters are what moves
-- a model initialised at std 0.02)
SELECT jsonb_agg(pg_temp.t(:'P' || l || m.path || '.lora_' || ab || '.weight',
                           CASE ab WHEN 'A' THEN 2 ELSE m.out_dim END,
                           CASE ab WHEN 'A' THEN m.in_dim ELSE 2 END, 1.1 + l + m.k + (ab = 'B')::int * 0.05)) AS tensors
  FROM generate_series(0, 1) l,
       (VALUES ('.self_attn.q_proj', 32, 32, 0.1), ('.mlp.gate_proj', 64, 32, 0.2),
               ('.mlp.up_proj', 64, 32, 0.3), ('.mlp.down_proj', 32, 64, 0.4)) m(path, out_dim, in_dim, k),
       (VALUES ('A'), ('B')) x(ab) \gset
\set acfg '{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 8, "lora_dropout": 0.1, "target_modules": ["q_proj", "gate_proj", "up_proj", "down_proj"], "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M", "bias": "none", "use_dora": false, "rank_pattern": {}, "inference_mode": true}'
SELECT pg_temp.peft(:'dir' || '/peft', :'acfg', :'tensors');

-- import: the base must be named
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_a'', %L)', :'dir' || '/peft'));
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_a'', %L, base => ''no_such_base'')', :'dir' || '/peft'));
SELECT sft_model_import('lora_a', :'dir' || '/peft', base => 'lora_base') AS parameters;
SELECT name, parent, tokenizer, parameters, size_bytes, run_id, dtype,
       config = (SELECT config FROM sft_models WHERE name = 'lora_base') AS base_config,
       size_bytes = length(lo_get(weights)) AS size_is_lo
  FROM sft_models WHERE name = 'lora_a';
SELECT jsonb_pretty(adapter) FROM sft_models WHERE name = 'lora_a';
-- the large object holds the PEFT file's bytes (our file is already canonical)
SELECT lo_get(weights) = pg_read_binary_file(:'dir' || '/peft/adapter_model.safetensors') AS lo_is_file
  FROM sft_models WHERE name = 'lora_a';
-- base only for adapters; an adapter is no base
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_a'')', :'dir' || '/peft'));
SELECT sft_model_export('lora_base', :'dir' || '/hf') IS NOT NULL AS exported;
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/hf'));

-- import: files that do not fit the base or that we refuse
SELECT pg_temp.peft(:'dir' || '/bad1', jsonb_set(:'acfg', '{r}', '3'), :'tensors');
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad1'));
SELECT pg_temp.peft(:'dir' || '/bad2', jsonb_set(:'acfg', '{target_modules}', '["q_proj", "gate_proj", "up_proj"]'), :'tensors');
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad2'));
SELECT pg_temp.peft(:'dir' || '/bad3', jsonb_set(:'acfg', '{target_modules}', '"all-linear"'), :'tensors');
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad3'));
SELECT pg_temp.peft(:'dir' || '/bad4', jsonb_set(:'acfg', '{use_dora}', 'true'), :'tensors');
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad4'));
SELECT pg_temp.peft(:'dir' || '/bad5', jsonb_set(:'acfg', '{layers_to_transform}', '[0]'), :'tensors');
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad5'));
SELECT pg_temp.peft(:'dir' || '/bad6', :'acfg', (:'tensors')::jsonb - 15);
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad6'));
SELECT pg_temp.peft(:'dir' || '/bad7', :'acfg', (:'tensors')::jsonb || jsonb_build_array(pg_temp.t(:'P' || '2.self_attn.q_proj.lora_A.weight', 2, 32, 1)));
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad7'));
SELECT pg_temp.peft(:'dir' || '/bad8', :'acfg', jsonb_set(:'tensors', '{0,shape}', '[2, 31]'));
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad8'));
SELECT pg_temp.peft(:'dir' || '/bad9', :'acfg', :'tensors');
SELECT pg_temp.write_file(:'dir' || '/bad9/adapter_config.json', convert_to('{"peft_type": "LORA", "r": 2', 'UTF8'));
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad9'));
SELECT pg_temp.write_file(:'dir' || '/bad9/adapter_config.json', convert_to(:'acfg', 'UTF8'));
SELECT pg_temp.write_file(:'dir' || '/bad9/adapter_model.safetensors', '\x0800000000000000'::bytea);
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_x'', %L, base => ''lora_base'')', :'dir' || '/bad9'));
SELECT count(*) AS failed_imports_left_nothing FROM sft_models WHERE name = 'lora_x';

-- export: a PEFT directory; export, import, export again is byte-exact
SELECT replace(array_to_string(sft_model_export('lora_a', :'dir' || '/out1'), ' '), :'dir', '$DIR') AS files;
SELECT sft_model_export('lora_a', :'dir' || '/out1_gguf', 'gguf');
SELECT pg_read_binary_file(:'dir' || '/out1/adapter_model.safetensors') = pg_read_binary_file(:'dir' || '/peft/adapter_model.safetensors') AS same_safetensors;
SELECT pg_read_file(:'dir' || '/out1/adapter_config.json');
SELECT sft_model_import('lora_a2', :'dir' || '/out1', base => 'lora_base') AS parameters;
SELECT array_length(sft_model_export('lora_a2', :'dir' || '/out2'), 1) AS files;
SELECT pg_read_binary_file(:'dir' || '/out1/adapter_model.safetensors') = pg_read_binary_file(:'dir' || '/out2/adapter_model.safetensors') AS safetensors_exact,
       pg_read_binary_file(:'dir' || '/out1/adapter_config.json') = pg_read_binary_file(:'dir' || '/out2/adapter_config.json') AS config_exact;
SELECT a.adapter = b.adapter AS same_adapter_config FROM sft_models a, sft_models b
 WHERE a.name = 'lora_a' AND b.name = 'lora_a2';

-- generation: the adapter changes the output, and answers as the merged model does
\set ids 'ARRAY[5, 77, 12, 300, 41, 9]'
SELECT sft_generate_tokens('lora_a', :ids, 24) <> sft_generate_tokens('lora_base', :ids, 24) AS adapter_changes_output;
SELECT sft_model_merge('lora_a', 'lora_merged') = (SELECT parameters FROM sft_models WHERE name = 'lora_base') AS merged_parameters;
SELECT name, parent, tokenizer, adapter IS NULL AS full_model,
       md5(lo_get(weights)) <> (SELECT md5(lo_get(weights)) FROM sft_models WHERE name = 'lora_base') AS weights_changed
  FROM sft_models WHERE name = 'lora_merged';
SELECT sft_generate_tokens('lora_a', :ids, 24) = sft_generate_tokens('lora_merged', :ids, 24) AS greedy_equals_merged;
SELECT sft_generate_tokens('lora_merged', :ids, 24) AS merged_tokens \gset
SELECT sft_generate('lora_a', 'Hello there', 16) = sft_generate('lora_merged', 'Hello there', 16) AS text_equals_merged;
SELECT sft_generate_raw('lora_a', 'The sea', 16) = sft_generate_raw('lora_merged', 'The sea', 16) AS raw_equals_merged;
SELECT (SELECT array_agg(reply ORDER BY ordinality) FROM sft_generate_batch('lora_a', ARRAY['[{"role":"user","content":"Hi"}]', '[{"role":"user","content":"The sea"}]', '[{"role":"user","content":"One two three"}]']::jsonb[], 12))
     = ARRAY[sft_generate('lora_merged', '[{"role":"user","content":"Hi"}]'::jsonb, 12),
             sft_generate('lora_merged', '[{"role":"user","content":"The sea"}]'::jsonb, 12),
             sft_generate('lora_merged', '[{"role":"user","content":"One two three"}]'::jsonb, 12)] AS batch_equals_merged;
SELECT string_agg(p, '') = sft_generate('lora_merged', 'Hello there', 16) AS stream_equals_merged
  FROM sft_generate_stream('lora_a', 'Hello there', 16) p;
SET sft.generate_dtype = bf16;
SELECT sft_generate_tokens('lora_a', :ids, 8) IS NOT NULL AS bf16_decodes;
RESET sft.generate_dtype;
-- one copy of the base in the cache, shared by its adapters
SELECT sft_model_cache_clear() >= 0 AS cleared;
SELECT sft_generate_tokens('lora_a', :ids, 2) IS NOT NULL, sft_generate_tokens('lora_a2', :ids, 2) IS NOT NULL;
SELECT model, parameters, model_bytes FROM sft_model_cache() ORDER BY model;
SELECT sft_generate_tokens('lora_base', :ids, 2) IS NOT NULL AS base_hit;
SELECT model, hits FROM sft_model_cache() WHERE model = 'lora_base';
-- sft_loss and sft_eval on an adapter: the training forward path with the
-- adapter attached, the merged model's figures within fp32 rounding
SELECT abs(sft_loss('lora_a', '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]')
           - sft_loss('lora_merged', '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]')) < 1e-5 AS adapter_loss_is_merged_loss,
       sft_loss('lora_a', '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]')
           <> sft_loss('lora_base', '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]') AS adapter_changes_loss;

-- merge: bad input
SELECT sft_model_merge('lora_base', 'lora_y');
SELECT sft_model_merge('no_such', 'lora_y');
SELECT sft_model_merge('lora_a', 'lora_merged');
SELECT sft_model_merge('lora_a', '');
SELECT sft_model_merge(NULL, 'lora_y');

-- drop: not the base of adapters; adapters and merged models drop freely
SELECT sft_model_drop('lora_base');
SELECT sft_model_drop('lora_a2');
SELECT sft_model_drop('lora_base');
SELECT count(*) AS lo_left FROM sft_models m JOIN pg_largeobject_metadata l ON l.oid = m.weights
 WHERE m.name = 'lora_a2';

-- privileges: as for other models (owner, large object grants)
CREATE ROLE regress_sft_lora_owner LOGIN;
CREATE ROLE regress_sft_lora_other LOGIN;
GRANT pg_read_server_files, pg_write_server_files TO regress_sft_lora_other, regress_sft_lora_owner;
SET ROLE regress_sft_lora_other;
-- only the base's owner imports adapters of it
SELECT pg_temp.try(format('SELECT sft_model_import(''lora_o'', %L, base => ''lora_base'')', :'dir' || '/out1'));
SELECT sft_model_export('lora_a', :'dir' || '/out3');
SELECT sft_model_merge('lora_a', 'lora_o');
SELECT sft_model_drop('lora_a');
SELECT pg_temp.try($$SELECT sft_generate_tokens('lora_a', ARRAY[5, 77], 2)$$);
RESET ROLE;
DO $$
BEGIN
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO regress_sft_lora_other',
                 (SELECT weights FROM sft_models WHERE name = 'lora_a'));
END $$;
SET ROLE regress_sft_lora_other;
-- the adapter's weights are not enough: the base's are read too
SELECT pg_temp.try($$SELECT sft_generate_tokens('lora_a', ARRAY[5, 77], 2)$$);
RESET ROLE;
DO $$
BEGIN
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO regress_sft_lora_other',
                 (SELECT weights FROM sft_models WHERE name = 'lora_base'));
END $$;
SET ROLE regress_sft_lora_other;
SELECT sft_generate_tokens('lora_a', :ids, 24) = :'merged_tokens' AS other_generates;
RESET ROLE;
-- an owner's own base and adapter
SET ROLE regress_sft_lora_owner;
SELECT sft_model_create('lora_owned_base', 'lora_tok', :'cfg', 4) > 0 AS created;
SELECT sft_model_import('lora_owned', :'dir' || '/out1', base => 'lora_owned_base') > 0 AS imported;
SELECT owner, parent FROM sft_models WHERE name = 'lora_owned';
SELECT sft_model_merge('lora_owned', 'lora_owned_merged') > 0 AS merged;
SELECT sft_model_drop('lora_owned_base');
SELECT sft_model_drop('lora_owned'), sft_model_drop('lora_owned_merged'), sft_model_drop('lora_owned_base');
RESET ROLE;

-- clean up
SELECT sft_model_drop('lora_merged'), sft_model_drop('lora_a'), sft_model_drop('lora_base');
SELECT count(*) AS models_left FROM sft_models WHERE name LIKE 'lora%';
DROP ROLE regress_sft_lora_owner;
DROP ROLE regress_sft_lora_other;
SELECT sft_tokenizer_drop('lora_tok');
