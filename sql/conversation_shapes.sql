-- The other dataset shapes: turn lists (UltraChat), placeholders and identity
-- system prompts (hard-coded identity sets), "weight", TRL prompt-completion
-- rows and Alpaca rows; each with its error cases.
CREATE FUNCTION shapes_try(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE 'SELECT (' || q || ')::text' INTO r;
  RETURN coalesce(r, '<NULL>');
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;

-- sft_from_turns
SELECT shapes_try($$sft_from_turns('["Hi", "Hello!", "How are you?", "Fine."]'::jsonb)$$);
SELECT shapes_try($$sft_from_turns('["Hi"]'::jsonb)$$) AS one_turn;
SELECT shapes_try($$sft_from_turns('["Hi", "Hello!"]'::jsonb, system => 'Be brief.')$$) AS with_system;
SELECT shapes_try($$sft_from_turns('["Welcome!", "Hi", "Hello!"]'::jsonb, first_role => 'assistant')$$) AS assistant_first;
SELECT shapes_try($$sft_from_turns(ARRAY['Hi', 'Hello!'])$$) AS text_array;
SELECT shapes_try($$sft_from_turns(ARRAY['Welcome!', 'Hi', 'Hello!'], 'assistant', 'Sys')$$) AS text_array_assistant_first;
SELECT shapes_try($$sft_from_turns('["", "x"]'::jsonb)$$) AS empty_strings_kept;
SELECT shapes_try($$sft_from_turns(NULL::jsonb)$$) AS null_jsonb, shapes_try($$sft_from_turns(NULL::text[])$$) AS null_array;
SELECT shapes_try($$sft_from_turns('[]'::jsonb)$$) AS empty;
SELECT shapes_try($$sft_from_turns('{}'::text[])$$) AS empty_array;
SELECT shapes_try($$sft_from_turns('"Hi"'::jsonb)$$) AS scalar;
SELECT shapes_try($$sft_from_turns('{"data": ["Hi"]}'::jsonb)$$) AS object;
SELECT shapes_try($$sft_from_turns('["Hi", 2]'::jsonb)$$) AS number;
SELECT shapes_try($$sft_from_turns('["Hi", null]'::jsonb)$$) AS json_null;
SELECT shapes_try($$sft_from_turns('["Hi", {"role": "assistant", "content": "x"}]'::jsonb)$$) AS message_object;
SELECT shapes_try($$sft_from_turns(ARRAY['Hi', NULL])$$) AS sql_null_element;
SELECT shapes_try($$sft_from_turns('{{a,b},{c,d}}'::text[])$$) AS two_dimensions;
SELECT shapes_try($$sft_from_turns('["Welcome!"]'::jsonb, 'assistant')$$) AS only_assistant;
SELECT shapes_try($$sft_from_turns('["Hi"]'::jsonb, 'system')$$) AS bad_role;
SELECT shapes_try($$sft_from_turns('["Hi"]'::jsonb, NULL)$$) AS null_role;
SELECT shapes_try($$sft_from_turns('["Hi", "Hello"]'::jsonb, system => NULL)$$) AS null_system;
-- UltraChat rows: {"id": ..., "data": [...]}
SELECT sft_turns(sft_from_turns(doc->'data')) FROM (VALUES ('{"id": "0", "data": ["q1", "a1", "q2", "a2", "q3"]}'::jsonb)) t(doc);

-- sft_fill
\set identity '[{"role": "system", "content": "You are <|MODEL_NAME|>."}, {"role": "user", "content": "Who made you?"}, {"role": "assistant", "content": "I am {{name}}, built by {{author}} (data until <|DATE_CUTOFF|>). {{name}}!"}]'
SELECT sft_fill(:'identity', '{"<|MODEL_NAME|>": "Tiny", "{{name}}": "Tiny", "{{author}}": "the Lab", "<|DATE_CUTOFF|>": "2024"}');
SELECT sft_placeholders(sft_fill(:'identity', '{"{{name}}": "Tiny"}')) AS left_unfilled;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "ab"}]', '{"a": "b", "b": "a"}')$$) AS one_pass_swap;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "<|A|><|AB|>"}]', '{"<|A": "x", "<|AB|>": "long", "<|A|>": "short"}')$$) AS longest_key_wins;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "{{x}}"}]', '{"{{x}}": "{{x}}{{x}}"}')$$) AS value_not_rescanned;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "é{{x}}é"}]', '{"{{x}}": "ü"}')$$) AS utf8;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": [{"type": "text", "text": "<|N|>"}, " and <|N|>"]}]', '{"<|N|>": "n"}')$$) AS content_parts;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "x"}]', '{}')$$) AS no_values;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "x"}]', '{"": "y"}')$$) AS empty_key;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "x"}]', '{"x": 1}')$$) AS numeric_value;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "x"}]', '{"x": null}')$$) AS null_value;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "x"}]', '["x"]')$$) AS array_values;
SELECT shapes_try($$sft_fill('[{"role": "user", "content": "x"}]', '"x"')$$) AS scalar_values;
SELECT shapes_try($$sft_fill('{"role": "user"}', '{}')$$) AS not_a_conversation;
SELECT shapes_try($$sft_fill(NULL, '{}')$$) AS null_in;

-- sft_placeholders
SELECT sft_placeholders(:'identity');
SELECT t, sft_placeholders(jsonb_build_array(jsonb_build_object('role', 'user', 'content', t))) FROM (VALUES
  ('<|im_end|> and <|endoftext|> are special tokens, not placeholders'),
  ('<|MODEL_NAME|> <|MODEL_NAME|> twice, once listed'),
  ('{{ name }} {{author}} {{a.b-c_1}} {{9x}} {{}} {{ }} {{ na me }}'),
  ('<|A|> <|A1_B|> <|1A|> <|a|> <|A <|A |> <||> {{x} {x}}'),
  ('<|X|>{{y}}<|Z|>'),
  ('none at all')) v(t);
SELECT cardinality(sft_placeholders('[{"role": "user", "content": "plain"}]')) AS empty_is_empty_array;
-- a WHERE that refuses unfilled rows
SELECT count(*) FILTER (WHERE sft_placeholders(m) = '{}') AS ready, count(*) AS total
FROM (VALUES (sft_fill(:'identity', '{"<|MODEL_NAME|>": "T", "{{name}}": "T", "{{author}}": "L", "<|DATE_CUTOFF|>": "2024"}')),
             (:'identity'::jsonb)) v(m);

-- sft_add_system
SELECT sft_add_system('[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]', 'You are Tiny.');
SELECT sft_add_system('[{"role": "system", "content": "Keep me."}, {"role": "user", "content": "Hi"}]', 'You are Tiny.');
SELECT shapes_try($$sft_add_system('[{"role": "assistant", "content": "x"}]', 'S')$$) AS invalid;
SELECT shapes_try($$sft_add_system('[{"role": "user", "content": "x"}]', NULL)$$) AS null_system;

-- "weight": 0 keeps an assistant message as context only
SELECT sft_messages('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d", "weight": 1}]');
SELECT shapes_try($$sft_messages('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0.5}]')$$) AS fractional;
SELECT shapes_try($$sft_messages('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": "0"}]')$$) AS string_weight;
SELECT shapes_try($$sft_messages('[{"role": "user", "content": "a", "weight": 0}, {"role": "assistant", "content": "b"}]')$$) AS user_weight_dropped;
SELECT shapes_try($$sft_messages('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": null}]')$$) AS null_weight;
SELECT shapes_try($$sft_messages('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 1.0}]')$$) AS one_point_zero;
-- kept by the other functions
SELECT sft_truncate_turns(sft_merge_system('[{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]'), 2);

-- sft_from_prompt_completion
SELECT sft_from_prompt_completion('"What is 2+2?"', '"4"');
SELECT sft_from_prompt_completion('[{"role": "user", "content": "What color is the sky?"}]', '[{"role": "assistant", "content": "Blue."}]');
SELECT sft_from_prompt_completion('[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Sky?"}]',
                                  '[{"role": "assistant", "content": "Blue."}]') AS multi_turn_prompt;
SELECT shapes_try($$sft_from_prompt_completion('[{"role": "user", "content": "q"}]', '"a"')$$) AS mixed_forms;
SELECT shapes_try($$sft_from_prompt_completion('"q"', '[{"role": "user", "content": "a"}]')$$) AS user_completion;
SELECT shapes_try($$sft_from_prompt_completion('"q"', '[]')$$) AS empty_completion;
SELECT shapes_try($$sft_from_prompt_completion('[]', '"a"')$$) AS empty_prompt;
SELECT shapes_try($$sft_from_prompt_completion('3', '"a"')$$) AS numeric_prompt;
SELECT shapes_try($$sft_from_prompt_completion('"q"', 'null')$$) AS json_null_completion;
SELECT shapes_try($$sft_from_prompt_completion('{"role": "user"}', '"a"')$$) AS object_prompt;
SELECT shapes_try($$sft_from_prompt_completion('[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]', '"b"')$$) AS prompt_ending_with_assistant;
SELECT shapes_try($$sft_from_prompt_completion('[{"role": "user", "content": "q"}]', '[{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]')$$) AS two_completions;
SELECT shapes_try($$sft_from_prompt_completion('[{"role": "user", "content": 1}]', '"a"')$$) AS bad_message;
SELECT shapes_try($$sft_from_prompt_completion(NULL, '"a"')$$) AS null_in;

-- sft_from_alpaca
SELECT sft_from_alpaca('Translate to French.', 'cat', 'chat');
SELECT sft_from_alpaca('Name a color.', '', 'Blue.') AS empty_input, sft_from_alpaca('Name a color.', NULL, 'Blue.') AS null_input;
SELECT sft_from_alpaca('', 'only input', 'x') AS empty_instruction;
SELECT sft_from_alpaca('Translate.', 'cat', 'chat', system => 'You translate.', separator => E'\n\nInput: ');
SELECT sft_from_alpaca('And a dog?', '', 'chien', history => '[["Translate cat.", "chat"], ["And a bird?", "oiseau"]]');
SELECT shapes_try($$sft_from_alpaca(NULL, 'x', 'y')$$) AS null_instruction;
SELECT shapes_try($$sft_from_alpaca('x', 'y', NULL)$$) AS null_output;
SELECT shapes_try($$sft_from_alpaca('x', 'y', 'z', separator => NULL)$$) AS null_separator;
SELECT shapes_try($$sft_from_alpaca('x', '', 'z', history => '{"a": 1}')$$) AS history_object;
SELECT shapes_try($$sft_from_alpaca('x', '', 'z', history => '[["a"]]')$$) AS history_single;
SELECT shapes_try($$sft_from_alpaca('x', '', 'z', history => '[["a", 2]]')$$) AS history_number;
SELECT shapes_try($$sft_from_alpaca('x', '', 'z', history => '["a", "b"]')$$) AS history_flat;
SELECT shapes_try($$sft_from_alpaca('x', '', 'z', history => '[]')$$) AS history_empty;
SELECT shapes_try($$sft_from_alpaca('x', '', 'z', history => 'null')$$) AS history_json_null;

-- The loss mask: only the completion is trained, whatever train_on says.
\set bpe `cat test/fixtures/tiny_bpe.json`
SELECT tokenizer FROM sft_tokenizer_load('shapes_tok', :'bpe');
SELECT sft_tokenizer_set_template('shapes_tok', 'chatml');
CREATE FUNCTION shapes_trained(messages jsonb, train_on text DEFAULT 'all_assistant')
RETURNS text LANGUAGE sql AS $$
  SELECT sft_detokenize('shapes_tok', array_agg(e.input_ids[i] ORDER BY i) FILTER (WHERE e.loss_mask[i] = 1))
  FROM sft_encode('shapes_tok', messages, NULL, train_on) e, generate_subscripts(e.input_ids, 1) AS i
$$;
\set pc_prompt '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Sky?"}]'
SELECT shapes_trained(sft_from_prompt_completion(:'pc_prompt', '"Blue."')) AS prompt_completion,
       shapes_trained(sft_from_prompt_completion(:'pc_prompt', '"Blue."'), 'last_assistant') AS last_assistant,
       shapes_trained(:'pc_prompt'::jsonb || '[{"role": "assistant", "content": "Blue."}]') AS plain_conversation;
SELECT shapes_trained('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]') AS weight_zero;
SELECT shapes_try($$shapes_trained('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}]')$$) AS nothing_trained;
SELECT shapes_trained(sft_from_alpaca('And a dog?', '', 'chien', history => '[["Translate cat.", "chat"]]')) AS alpaca_all,
       shapes_trained(sft_from_alpaca('And a dog?', '', 'chien', history => '[["Translate cat.", "chat"]]'), 'last_assistant') AS alpaca_last;
SELECT sft_tokenizer_drop('shapes_tok');
DROP FUNCTION shapes_try(text), shapes_trained(jsonb, text);
