-- Conversation functions: sft_messages, sft_is_conversation, sft_merge_system,
-- sft_turns, sft_truncate_turns over a corpus of malformed and boundary inputs.
-- try() shows a result or the error (SQLSTATE + message) so one query covers
-- every input.
CREATE FUNCTION try(fn text, arg jsonb, extra text DEFAULT '') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE format('SELECT %s($1%s)::text', fn, extra) INTO r USING arg;
  RETURN coalesce(r, '<NULL>');
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE TABLE inputs (id int PRIMARY KEY, note text, input jsonb);
INSERT INTO inputs VALUES
 (1,  'object, not array',        '{"role":"user","content":"x"}'),
 (2,  'scalar string',            '"hello"'),
 (3,  'scalar number',            '42'),
 (4,  'json null',                'null'),
 (5,  'empty array',              '[]'),
 (6,  'string element',           '["hi"]'),
 (7,  'nested array element',     '[[{"role":"user","content":"x"}]]'),
 (8,  'missing role',             '[{"content":"x"}]'),
 (9,  'numeric role',             '[{"role":1,"content":"x"}]'),
 (10, 'null role',                '[{"role":null,"content":"x"}]'),
 (11, 'unknown role',             '[{"role":"bot","content":"x"}]'),
 (12, 'empty role',               '[{"role":"","content":"x"}]'),
 (13, 'roles in mixed case',      '[{"role":"USER","content":"hi"},{"role":"Assistant","content":"hello"}]'),
 (14, 'missing content',          '[{"role":"user"}]'),
 (15, 'null content',             '[{"role":"user","content":null}]'),
 (16, 'numeric content',          '[{"role":"user","content":7}]'),
 (17, 'object content',           '[{"role":"user","content":{"text":"x"}}]'),
 (18, 'empty parts',              '[{"role":"user","content":[]}]'),
 (19, 'text parts joined',        '[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"c"}]'),
 (20, 'value instead of text',    '[{"role":"user","content":[{"type":"text","value":"v"}]},{"role":"assistant","content":[{"value":"w"}]}]'),
 (21, 'image part',               '[{"role":"user","content":[{"type":"image","url":"x.png"}]}]'),
 (22, 'part without text',        '[{"role":"user","content":[{"type":"text"}]}]'),
 (23, 'numeric part text',        '[{"role":"user","content":[{"type":"text","text":5}]}]'),
 (24, 'numeric part type',        '[{"role":"user","content":[{"type":1,"text":"x"}]}]'),
 (25, 'two consecutive users',    '[{"role":"user","content":"a"},{"role":"user","content":"b"}]'),
 (26, 'assistant first',          '[{"role":"assistant","content":"a"},{"role":"user","content":"b"}]'),
 (27, 'ends with user',           '[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]'),
 (28, 'system only',              '[{"role":"system","content":"s"}]'),
 (29, 'system in the middle',     '[{"role":"user","content":"a"},{"role":"system","content":"s"},{"role":"assistant","content":"b"}]'),
 (30, 'two systems first',        '[{"role":"system","content":"s1"},{"role":"system","content":"s2"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]'),
 (31, 'extra keys dropped',       '[{"role":"user","content":"x","name":"bob","weight":1},{"role":"assistant","content":"y","tool_calls":[]}]'),
 (32, 'empty string content',     '[{"role":"user","content":""},{"role":"assistant","content":""}]'),
 (33, 'unicode content',          '[{"role":"user","content":"héllo 👋 你好 e\u0301"},{"role":"assistant","content":"مرحبا"}]'),
 (34, 'escapes',                  '[{"role":"user","content":"a\nb\t\"c\"\\"},{"role":"assistant","content":"ok"}]'),
 (35, 'deeply nested content',    ('[{"role":"user","content":' || repeat('[', 500) || '"x"' || repeat(']', 500) || '}]')::jsonb),
 (36, 'two consecutive assistants','[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"assistant","content":"c"}]'),
 (37, 'three turns with system',  '[{"role":"system","content":"S"},{"role":"user","content":"u1"},{"role":"assistant","content":"a1"},{"role":"user","content":"u2"},{"role":"assistant","content":"a2"},{"role":"user","content":"u3"},{"role":"assistant","content":"a3"}]'),
 (38, 'assistant after system',   '[{"role":"system","content":"S"},{"role":"assistant","content":"a"}]'),
 (39, 'part is a bare string',    '[{"role":"user","content":["a", {"type":"text","text":"b"}]},{"role":"assistant","content":"c"}]'),
 (40, 'part is a number',         '[{"role":"user","content":[1]}]'),
 (41, 'single user message',      '[{"role":"user","content":"only a question"}]'),
 (42, 'element is null',          '[null]');

SELECT id, note, try('sft_messages', input) FROM inputs ORDER BY id;
SELECT id, note, try('sft_is_conversation', input) FROM inputs ORDER BY id;
SELECT id, note, try('sft_turns', input) FROM inputs ORDER BY id;
SELECT id, note, try('sft_merge_system', input) FROM inputs ORDER BY id;
SELECT id, note, try('sft_merge_system', input, ', separator => '' | ''') FROM inputs WHERE id IN (30, 37) ORDER BY id;
SELECT id, note, try('sft_truncate_turns', input, ', 1') FROM inputs ORDER BY id;
SELECT id, note, try('sft_truncate_turns', input, ', 2') FROM inputs WHERE id IN (27, 37) ORDER BY id;

-- Errors as psql shows them (message index, errcode class).
SELECT sft_messages('[{"role":"user","content":"a"},{"role":"user","content":"b"}]');
SELECT sft_merge_system('[{"role":"system","content":"s"}]');
SELECT sft_truncate_turns('[{"role":"user","content":"a"}]', 0);
SELECT sft_truncate_turns('[{"role":"user","content":"a"}]', -1);

-- SQL NULL in, NULL out; NULL separator or max_turns is NULL too.
SELECT sft_messages(NULL) IS NULL AS messages_null,
       sft_is_conversation(NULL) IS NULL AS is_conv_null,
       sft_turns(NULL) IS NULL AS turns_null,
       sft_merge_system('[{"role":"user","content":"a"}]', NULL) IS NULL AS sep_null,
       sft_truncate_turns('[{"role":"user","content":"a"}]', NULL) IS NULL AS max_null;

-- Invalid UTF-8 and NUL never reach the functions: jsonb input rejects them.
SELECT sft_messages('[{"role":"user","content":"\ud800"}]');
SELECT sft_messages('[{"role":"user","content":"a\u0000b"}]');

-- 1 MB content survives intact, merge and truncation included.
SELECT length(sft_messages(jsonb_build_array(jsonb_build_object('role','user','content',repeat('x', 1048576))))->0->>'content') AS one_mb;
SELECT length(sft_merge_system(jsonb_build_array(
         jsonb_build_object('role','system','content',repeat('s', 1048576)),
         jsonb_build_object('role','user','content',repeat('u', 1048576))))->0->>'content') AS two_mb_plus_separator;

-- A thousand messages.
SELECT sft_turns((SELECT jsonb_agg(jsonb_build_object('role', CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, 'content', i::text)) FROM generate_series(0, 999) i)) AS turns_500;

-- Used as a filter, the way views will use them.
SELECT count(*) FILTER (WHERE sft_is_conversation(input)) AS valid,
       count(*) FILTER (WHERE NOT sft_is_conversation(input)) AS invalid
FROM inputs;

-- Immutable and parallel safe, as promised in the catalog.
SELECT proname, provolatile, proparallel, proisstrict FROM pg_proc
WHERE proname IN ('sft_messages','sft_is_conversation','sft_merge_system','sft_turns',
                  'sft_truncate_turns','sft_from_sharegpt','sft_from_pair')
ORDER BY proname;

DROP TABLE inputs;
DROP FUNCTION try(text, jsonb, text);
