-- sft_from_sharegpt and sft_from_pair over malformed and boundary inputs.
CREATE FUNCTION try_sharegpt(arg jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  RETURN coalesce(sft_from_sharegpt(arg)::text, '<NULL>');
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE TABLE sharegpt (id int PRIMARY KEY, note text, input jsonb);
INSERT INTO sharegpt VALUES
 (1,  'object, not array',      '{"from":"human","value":"x"}'),
 (2,  'scalar',                 '"x"'),
 (3,  'empty array',            '[]'),
 (4,  'string element',         '["x"]'),
 (5,  'missing from',           '[{"value":"x"}]'),
 (6,  'numeric from',           '[{"from":3,"value":"x"}]'),
 (7,  'unknown sender',         '[{"from":"robot","value":"x"}]'),
 (8,  'missing value',          '[{"from":"human"}]'),
 (9,  'null value',             '[{"from":"human","value":null}]'),
 (10, 'numeric value',          '[{"from":"human","value":1}]'),
 (11, 'human gpt',              '[{"from":"human","value":"Who are you?"},{"from":"gpt","value":"I am a model."}]'),
 (12, 'with system',            '[{"from":"system","value":"Be brief."},{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]'),
 (13, 'chatgpt sender',         '[{"from":"human","value":"a"},{"from":"chatgpt","value":"b"}]'),
 (14, 'bing and bard',          '[{"from":"human","value":"a"},{"from":"bing","value":"b"},{"from":"human","value":"c"},{"from":"bard","value":"d"}]'),
 (15, 'upper-case senders',     '[{"from":"HUMAN","value":"a"},{"from":"GPT","value":"b"}]'),
 (16, 'gpt first',              '[{"from":"gpt","value":"a"},{"from":"human","value":"b"}]'),
 (17, 'two humans',             '[{"from":"human","value":"a"},{"from":"human","value":"b"}]'),
 (18, 'ends with human',        '[{"from":"human","value":"a"},{"from":"gpt","value":"b"},{"from":"human","value":"c"}]'),
 (19, 'extra keys',             '[{"from":"human","value":"a","markdown":true},{"from":"gpt","value":"b","id":7}]'),
 (20, 'role/content form',      '[{"role":"user","content":"a"}]'),
 (21, 'empty values',           '[{"from":"human","value":""},{"from":"gpt","value":""}]'),
 (22, 'system only',            '[{"from":"system","value":"s"}]'),
 (23, 'system after start',     '[{"from":"human","value":"a"},{"from":"system","value":"s"}]'),
 (24, 'unicode',                '[{"from":"human","value":"你好 👋"},{"from":"gpt","value":"مرحبا e\u0301"}]'),
 (25, 'null element',           '[null]'),
 (26, 'array value',            '[{"from":"human","value":["a"]}]'),
 (27, 'user/assistant senders', '[{"from":"user","value":"a"},{"from":"assistant","value":"b"}]'),
 (28, 'model sender',           '[{"from":"human","value":"a"},{"from":"model","value":"b"}]'),
 (29, 'empty sender',           '[{"from":"","value":"a"}]'),
 (30, 'nested deep value',      ('[{"from":"human","value":' || repeat('[', 300) || '1' || repeat(']', 300) || '}]')::jsonb),
 (31, 'json null',              'null');

SELECT id, note, try_sharegpt(input) FROM sharegpt ORDER BY id;
SELECT sft_from_sharegpt(NULL) IS NULL AS null_in_null_out;
SELECT sft_from_sharegpt('[{"from":"robot","value":"x"}]');

-- Round trip with the other functions: ShareGPT -> merge -> two turns.
SELECT sft_truncate_turns(sft_merge_system(sft_from_sharegpt(input)), 1)
FROM sharegpt WHERE id IN (12, 14) ORDER BY id;

-- sft_from_pair: prompt and response required, system optional.
SELECT sft_from_pair('What is 2+2?', '4');
SELECT sft_from_pair('What is 2+2?', '4', 'You are terse.');
SELECT sft_from_pair('What is 2+2?', '4', NULL);
SELECT sft_from_pair('', '');
SELECT sft_from_pair(prompt => 'p', response => 'r', system => '');
SELECT sft_from_pair(NULL, 'r');
SELECT sft_from_pair('p', NULL);
SELECT sft_from_pair(NULL, NULL, 'sys');
SELECT sft_from_pair(E'line1\nline2 "quoted" \\ back', E'tab\there');
SELECT sft_from_pair('你好 👋', 'مرحبا');
SELECT length(sft_from_pair(repeat('p', 1048576), repeat('r', 1048576))->1->>'content') AS one_mb;
SELECT sft_turns(sft_from_pair('a', 'b', 's')) AS one_turn,
       sft_merge_system(sft_from_pair('a', 'b', 's')) AS merged;
SELECT sft_is_conversation(sft_from_pair(x, x)) FROM (VALUES ('a'), (''), ('{}'), ('[')) v(x);

DROP TABLE sharegpt;
DROP FUNCTION try_sharegpt(jsonb);
