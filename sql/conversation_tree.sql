-- Message trees: sft_from_oasst over a table in the flat oasst export shape,
-- sft_from_oasst_tree over the nested shape, the README's recursive CTE
-- agreeing with both, and every malformed input.
CREATE FUNCTION try_oasst(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE 'SELECT count(*) FROM (' || q || ') s' INTO n;
  RETURN n || ' rows';
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;

-- Two trees as the HF export has them (column subset, extra columns ignored).
CREATE TABLE oasst (message_id text, parent_id text, message_tree_id text, role text, text text,
                    lang text, rank int, deleted boolean, review_result boolean, synthetic boolean);
INSERT INTO oasst VALUES
 ('t1-r',  NULL,   't1', 'prompter',  'What is a tree?',        'en', NULL, false, true, false),
 ('t1-a0', 't1-r', 't1', 'assistant', 'A graph without cycles.','en', 0,    false, true, false),
 ('t1-a1', 't1-r', 't1', 'assistant', 'A plant.',               'en', 1,    false, true, false),
 ('t1-a2', 't1-r', 't1', 'assistant', 'Spam spam.',             'en', 2,    false, false, false),
 ('t1-a3', 't1-r', 't1', 'assistant', 'Removed.',               'en', NULL, true,  true, false),
 ('t1-p0', 't1-a0','t1', 'prompter',  'Give an example.',       'en', 0,    false, true, false),
 ('t1-b0', 't1-p0','t1', 'assistant', 'A family tree.',         'en', NULL, false, NULL, false),
 ('t1-p1', 't1-a0','t1', 'prompter',  'Unanswered follow-up.',  'en', 1,    false, true, false),
 ('t1-c0', 't1-a3','t1', 'prompter',  'Under a deleted reply.', 'en', NULL, false, true, false),
 ('t1-c1', 't1-c0','t1', 'assistant', 'Also dropped.',          'en', NULL, false, true, false),
 ('t2-r',  NULL,   't2', 'prompter',  '¿Qué es un árbol?',      'es', NULL, false, true, false),
 ('t2-a0', 't2-r', 't2', 'assistant', 'Una planta.',            'es', NULL, false, true, false),
 ('t3-r',  NULL,   't3', 'prompter',  'Nobody answered.',       'en', NULL, false, true, false);

SELECT tree_id, last_message_id, messages FROM sft_from_oasst('oasst') ORDER BY 1, 2;
SELECT tree_id, last_message_id, messages FROM sft_from_oasst('oasst', 'top1') ORDER BY 1, 2;
SELECT count(*) FROM sft_from_oasst('oasst', threads => 'all');
-- the threads are conversations the other functions accept
SELECT bool_and(sft_is_conversation(messages)), sum(sft_turns(messages)) FROM sft_from_oasst('oasst');
-- a view filtering by language
CREATE VIEW oasst_es AS SELECT * FROM oasst WHERE lang = 'es';
SELECT last_message_id, messages FROM sft_from_oasst('oasst_es', 'top1');

-- The README's recursive CTEs give the same rows (both directions of EXCEPT empty).
CREATE VIEW cte_all AS
WITH RECURSIVE kept AS (          -- not deleted, not rejected in review
  SELECT * FROM oasst WHERE NOT coalesce(deleted, false) AND coalesce(review_result, true)
), answered AS (                  -- prompts only with a kept reply
  SELECT * FROM kept WHERE role = 'assistant'
  UNION ALL
  SELECT * FROM kept p WHERE role <> 'assistant' AND EXISTS (SELECT 1 FROM kept r WHERE r.parent_id = p.message_id)
), thread AS (
  SELECT message_tree_id, message_id,
         jsonb_build_array(jsonb_build_object('role', 'user', 'content', text)) AS messages
  FROM answered WHERE parent_id IS NULL
  UNION ALL
  SELECT t.message_tree_id, a.message_id,
         t.messages || jsonb_build_object('role', CASE a.role WHEN 'prompter' THEN 'user' ELSE 'assistant' END,
                                          'content', a.text)
  FROM thread t JOIN answered a ON a.parent_id = t.message_id
)
SELECT message_tree_id AS tree_id, message_id AS last_message_id, messages FROM thread t
WHERE NOT EXISTS (SELECT 1 FROM answered a WHERE a.parent_id = t.message_id);
CREATE VIEW cte_top1 AS
WITH RECURSIVE kept AS (          -- not deleted, not rejected in review
  SELECT * FROM oasst WHERE NOT coalesce(deleted, false) AND coalesce(review_result, true)
), answered AS (                  -- prompts only with a kept reply
  SELECT * FROM kept WHERE role = 'assistant'
  UNION ALL
  SELECT * FROM kept p WHERE role <> 'assistant' AND EXISTS (SELECT 1 FROM kept r WHERE r.parent_id = p.message_id)
), best AS (                      -- top1: the best-ranked kept child
  SELECT DISTINCT ON (parent_id) * FROM answered WHERE parent_id IS NOT NULL
  ORDER BY parent_id, rank NULLS LAST, message_id COLLATE "C"
), thread AS (
  SELECT message_tree_id, message_id,
         jsonb_build_array(jsonb_build_object('role', 'user', 'content', text)) AS messages
  FROM answered WHERE parent_id IS NULL
  UNION ALL
  SELECT t.message_tree_id, a.message_id,
         t.messages || jsonb_build_object('role', CASE a.role WHEN 'prompter' THEN 'user' ELSE 'assistant' END,
                                          'content', a.text)
  FROM thread t JOIN best a ON a.parent_id = t.message_id
)
SELECT message_tree_id AS tree_id, message_id AS last_message_id, messages FROM thread t
WHERE NOT EXISTS (SELECT 1 FROM answered a WHERE a.parent_id = t.message_id);
SELECT (SELECT count(*) FROM (SELECT * FROM sft_from_oasst('oasst') EXCEPT ALL SELECT * FROM cte_all) d) AS fn_not_cte,
       (SELECT count(*) FROM (SELECT * FROM cte_all EXCEPT ALL SELECT * FROM sft_from_oasst('oasst')) d) AS cte_not_fn,
       (SELECT count(*) FROM (SELECT * FROM sft_from_oasst('oasst', 'top1') EXCEPT ALL SELECT * FROM cte_top1) d) AS top1_fn_not_cte,
       (SELECT count(*) FROM (SELECT * FROM cte_top1 EXCEPT ALL SELECT * FROM sft_from_oasst('oasst', 'top1')) d) AS top1_cte_not_fn;

-- Random forests of 300 trees: the function and the CTEs agree on every one.
CREATE TABLE oasst_random AS
WITH RECURSIVE m(tree, n, parent_n, role) AS (
  SELECT t, 0, NULL::int, 'prompter' FROM generate_series(1, 300) t
  UNION ALL
  SELECT tree, n * 3 + k, n, CASE role WHEN 'prompter' THEN 'assistant' ELSE 'prompter' END
  FROM m, generate_series(1, 3) k
  WHERE n < 40 AND (hashint4(tree * 1000 + n * 3 + k) % 3) <> 0
)
SELECT 'm' || tree || '-' || n AS message_id,
       CASE WHEN parent_n IS NOT NULL THEN 'm' || tree || '-' || parent_n END AS parent_id,
       'tree' || tree AS message_tree_id, role, 'text ' || tree || '-' || n AS text,
       CASE WHEN abs(hashint4(tree * 7 + n)) % 4 = 0 THEN NULL ELSE abs(hashint4(tree * 11 + n)) % 3 END AS rank,
       abs(hashint4(tree * 13 + n)) % 11 = 0 AS deleted,
       CASE WHEN abs(hashint4(tree * 17 + n)) % 13 = 0 THEN false END AS review_result
FROM m;
CREATE OR REPLACE VIEW oasst_view AS SELECT * FROM oasst_random;
SELECT count(*) > 300 AS many_threads FROM sft_from_oasst('oasst_random');
ALTER VIEW cte_all RENAME TO cte_all_small;
ALTER VIEW cte_top1 RENAME TO cte_top1_small;
-- the same CTEs over the random forest
CREATE VIEW cte_all AS
WITH RECURSIVE kept AS (          -- not deleted, not rejected in review
  SELECT * FROM oasst_random WHERE NOT coalesce(deleted, false) AND coalesce(review_result, true)
), answered AS (                  -- prompts only with a kept reply
  SELECT * FROM kept WHERE role = 'assistant'
  UNION ALL
  SELECT * FROM kept p WHERE role <> 'assistant' AND EXISTS (SELECT 1 FROM kept r WHERE r.parent_id = p.message_id)
), thread AS (
  SELECT message_tree_id, message_id,
         jsonb_build_array(jsonb_build_object('role', 'user', 'content', text)) AS messages
  FROM answered WHERE parent_id IS NULL
  UNION ALL
  SELECT t.message_tree_id, a.message_id,
         t.messages || jsonb_build_object('role', CASE a.role WHEN 'prompter' THEN 'user' ELSE 'assistant' END,
                                          'content', a.text)
  FROM thread t JOIN answered a ON a.parent_id = t.message_id
)
SELECT message_tree_id AS tree_id, message_id AS last_message_id, messages FROM thread t
WHERE NOT EXISTS (SELECT 1 FROM answered a WHERE a.parent_id = t.message_id);
CREATE VIEW cte_top1 AS
WITH RECURSIVE kept AS (          -- not deleted, not rejected in review
  SELECT * FROM oasst_random WHERE NOT coalesce(deleted, false) AND coalesce(review_result, true)
), answered AS (                  -- prompts only with a kept reply
  SELECT * FROM kept WHERE role = 'assistant'
  UNION ALL
  SELECT * FROM kept p WHERE role <> 'assistant' AND EXISTS (SELECT 1 FROM kept r WHERE r.parent_id = p.message_id)
), best AS (                      -- top1: the best-ranked kept child
  SELECT DISTINCT ON (parent_id) * FROM answered WHERE parent_id IS NOT NULL
  ORDER BY parent_id, rank NULLS LAST, message_id COLLATE "C"
), thread AS (
  SELECT message_tree_id, message_id,
         jsonb_build_array(jsonb_build_object('role', 'user', 'content', text)) AS messages
  FROM answered WHERE parent_id IS NULL
  UNION ALL
  SELECT t.message_tree_id, a.message_id,
         t.messages || jsonb_build_object('role', CASE a.role WHEN 'prompter' THEN 'user' ELSE 'assistant' END,
                                          'content', a.text)
  FROM thread t JOIN best a ON a.parent_id = t.message_id
)
SELECT message_tree_id AS tree_id, message_id AS last_message_id, messages FROM thread t
WHERE NOT EXISTS (SELECT 1 FROM answered a WHERE a.parent_id = t.message_id);
SELECT (SELECT count(*) FROM sft_from_oasst('oasst_random')) = (SELECT count(*) FROM cte_all) AS same_count,
       (SELECT count(*) FROM (SELECT * FROM sft_from_oasst('oasst_view') EXCEPT ALL SELECT * FROM cte_all) d) AS fn_not_cte,
       (SELECT count(*) FROM (SELECT * FROM cte_all EXCEPT ALL SELECT * FROM sft_from_oasst('oasst_random')) d) AS cte_not_fn,
       (SELECT count(*) FROM (SELECT * FROM sft_from_oasst('oasst_random', 'top1') EXCEPT ALL SELECT * FROM cte_top1) d) AS top1_fn_not_cte,
       (SELECT count(*) FROM (SELECT * FROM cte_top1 EXCEPT ALL SELECT * FROM sft_from_oasst('oasst_random', 'top1')) d) AS top1_cte_not_fn;

-- Other column names, other types (uuid ids, numeric rank, jsonb flags), absent optional columns.
CREATE TABLE renamed (mid uuid, pid uuid, tid int, who text, body text, score float8, gone jsonb);
INSERT INTO renamed VALUES
 ('00000000-0000-0000-0000-000000000001', NULL, 7, 'prompter', 'Q', NULL, 'false'),
 ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 7, 'assistant', 'A2', 1, 'false'),
 ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 7, 'assistant', 'A1', 0, 'false'),
 ('00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 7, 'assistant', 'A0', 'NaN', 'true');
SELECT * FROM sft_from_oasst('renamed', 'top1', tree_column => 'tid', id_column => 'mid', parent_column => 'pid',
                             role_column => 'who', text_column => 'body', rank_column => 'score',
                             deleted_column => 'gone', review_column => NULL);
SELECT * FROM sft_from_oasst('renamed', 'all', tree_column => 'tid', id_column => 'mid', parent_column => 'pid',
                             role_column => 'who', text_column => 'body', rank_column => NULL,
                             deleted_column => NULL, review_column => NULL) ORDER BY 2;

-- Bad arguments and bad trees: each error says what and where.
CREATE TABLE bad (message_id text, parent_id text, message_tree_id text, role text, text text,
                  rank float8, deleted boolean, review_result boolean);
CREATE FUNCTION bad_case(rows text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE bad;
  EXECUTE 'INSERT INTO bad VALUES ' || rows;
  RETURN try_oasst('SELECT * FROM sft_from_oasst(''bad'')');
END $$;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', NULL, false, true), ('a', 'zz', 't', 'assistant', 'A', NULL, false, true)$$) AS orphan;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', NULL, false, true), ('a', 'b', 't', 'assistant', 'A', NULL, false, true), ('b', 'a', 't', 'prompter', 'B', NULL, false, true)$$) AS cycle;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', NULL, false, true), ('a', 'r', 'u', 'assistant', 'A', NULL, false, true)$$) AS parent_in_another_tree;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', NULL, false, true), ('r', NULL, 't', 'prompter', 'Q', NULL, false, true)$$) AS duplicate;
SELECT bad_case($$('r', NULL, 't', 'assistant', 'Q', NULL, false, true)$$) AS assistant_root;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', NULL, false, true), ('a', 'r', 't', 'prompter', 'A', NULL, false, true)$$) AS two_prompts;
SELECT bad_case($$('r', NULL, 't', 'system', 'Q', NULL, false, true)$$) AS system_role;
SELECT bad_case($$('r', NULL, 't', NULL, 'Q', NULL, false, true)$$) AS null_role;
SELECT bad_case($$('r', NULL, 't', 'prompter', NULL, NULL, false, true)$$) AS null_text;
SELECT bad_case($$(NULL, NULL, 't', 'prompter', 'Q', NULL, false, true)$$) AS null_id;
SELECT bad_case($$('r', NULL, NULL, 'prompter', 'Q', NULL, false, true)$$) AS null_tree;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', 1.5, false, true)$$) AS fractional_rank;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', -1, false, true)$$) AS negative_rank;
SELECT bad_case($$('r', NULL, 't', 'prompter', 'Q', NULL, NULL, NULL), ('a', 'r', 't', 'assistant', 'A', NULL, NULL, NULL)$$) AS null_flags_keep;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', 'best')$$) AS bad_threads;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', NULL)$$) AS null_threads;
SELECT try_oasst($$SELECT * FROM sft_from_oasst(NULL)$$) AS null_source;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('no_such_table')$$) AS missing_table;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', text_column => 'body')$$) AS missing_column;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', rank_column => 'score')$$) AS missing_optional_column;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', id_column => NULL)$$) AS null_required_column;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', rank_column => 'text')$$) AS rank_not_a_number;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', deleted_column => 'text')$$) AS deleted_not_boolean;
CREATE SEQUENCE a_sequence;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('a_sequence')$$) AS sequence;
-- column names are identifiers, never SQL
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst', text_column => 'text"; DROP TABLE oasst; --')$$) AS injection;
SELECT count(*) FROM oasst;

-- Read as the caller: privileges and row-level security apply.
CREATE ROLE oasst_reader;
SET ROLE oasst_reader;
SELECT try_oasst($$SELECT * FROM sft_from_oasst('oasst')$$) AS no_privilege;
RESET ROLE;
GRANT SELECT ON oasst TO oasst_reader;
ALTER TABLE oasst ENABLE ROW LEVEL SECURITY;
CREATE POLICY spanish_only ON oasst FOR SELECT TO oasst_reader USING (lang = 'es');
SET ROLE oasst_reader;
SELECT tree_id, last_message_id FROM sft_from_oasst('oasst');
RESET ROLE;
ALTER TABLE oasst DISABLE ROW LEVEL SECURITY;
DROP POLICY spanish_only ON oasst;
REVOKE SELECT ON oasst FROM oasst_reader;
DROP ROLE oasst_reader;

-- Huge trees: a chain of 20,001 messages (one thread) and a prompt with
-- 50,000 replies (50,000 threads).
CREATE TABLE big AS
SELECT 'c' || i AS message_id, CASE WHEN i > 0 THEN 'c' || (i - 1) END AS parent_id, 'chain' AS message_tree_id,
       CASE WHEN i % 2 = 0 THEN 'prompter' ELSE 'assistant' END AS role, 'm' || i AS text,
       NULL::int AS rank, false AS deleted, true AS review_result
FROM generate_series(0, 20000) i
UNION ALL
SELECT 'w' || i, CASE WHEN i > 0 THEN 'w0' END, 'wide', CASE WHEN i = 0 THEN 'prompter' ELSE 'assistant' END,
       'w' || i, i % 7, false, true
FROM generate_series(0, 50000) i;
SELECT tree_id, count(*), max(jsonb_array_length(messages)), min(last_message_id COLLATE "C")
FROM sft_from_oasst('big') GROUP BY 1 ORDER BY 1;
SELECT tree_id, last_message_id, jsonb_array_length(messages) FROM sft_from_oasst('big', 'top1') ORDER BY 1;

-- The nested export (*.trees.jsonl), one document per tree.
CREATE TABLE trees (doc jsonb);
INSERT INTO trees VALUES ($${"message_tree_id": "t1", "tree_state": "ready_for_export", "prompt": {
  "message_id": "t1-r", "parent_id": null, "role": "prompter", "text": "What is a tree?", "lang": "en",
  "rank": null, "deleted": false, "review_result": true, "synthetic": false, "replies": [
    {"message_id": "t1-a1", "role": "assistant", "text": "A plant.", "rank": 1, "deleted": false, "review_result": true, "replies": []},
    {"message_id": "t1-a0", "role": "assistant", "text": "A graph without cycles.", "rank": 0, "replies": [
       {"message_id": "t1-p0", "role": "prompter", "text": "Give an example.", "rank": 0, "replies": [
          {"message_id": "t1-b0", "role": "assistant", "text": "A family tree.", "review_result": null}]},
       {"message_id": "t1-p1", "role": "prompter", "text": "Unanswered follow-up.", "rank": 1}]},
    {"message_id": "t1-a2", "role": "assistant", "text": "Spam spam.", "rank": 2, "review_result": false},
    {"message_id": "t1-a3", "role": "assistant", "text": "Removed.", "deleted": true, "replies": [
       {"role": "prompter", "text": "Under a deleted reply.", "replies": [{"role": "assistant", "text": "Also dropped."}]}]}]}}$$),
 ($${"message_tree_id": "t2", "prompt": {"message_id": "t2-r", "role": "prompter", "text": "¿Qué es un árbol?",
   "replies": [{"message_id": "t2-a0", "role": "assistant", "text": "Una planta."}]}}$$);
SELECT doc->>'message_tree_id' AS tree, m FROM trees, sft_from_oasst_tree(doc) m ORDER BY 1, 2;
SELECT doc->>'message_tree_id' AS tree, m FROM trees, sft_from_oasst_tree(doc, 'top1') m ORDER BY 1, 2;
-- the flat and nested forms of the same trees give the same conversations
SELECT (SELECT count(*) FROM (SELECT messages FROM sft_from_oasst('oasst') WHERE tree_id IN ('t1', 't2')
                              EXCEPT ALL SELECT m FROM trees, sft_from_oasst_tree(doc) m) d) AS flat_not_nested,
       (SELECT count(*) FROM (SELECT m FROM trees, sft_from_oasst_tree(doc) m
                              EXCEPT ALL SELECT messages FROM sft_from_oasst('oasst') WHERE tree_id IN ('t1', 't2')) d) AS nested_not_flat;
SELECT sft_from_oasst_tree(NULL) IS NULL AS strict;
CREATE FUNCTION try_tree(doc jsonb, threads text DEFAULT 'all') RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN (SELECT count(*) FROM sft_from_oasst_tree(doc, threads)) || ' threads';
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT note, try_tree(doc) FROM (VALUES
 ('array',           '[{"prompt": {}}]'::jsonb),
 ('scalar',          '"tree"'),
 ('no prompt',       '{"message_tree_id": "x"}'),
 ('null prompt',     '{"prompt": null}'),
 ('prompt a string', '{"prompt": "hi"}'),
 ('no role',         '{"prompt": {"text": "Q"}}'),
 ('assistant root',  '{"prompt": {"role": "assistant", "text": "Q"}}'),
 ('numeric text',    '{"prompt": {"role": "prompter", "text": 1}}'),
 ('replies object',  '{"prompt": {"role": "prompter", "text": "Q", "replies": {"a": 1}}}'),
 ('reply a number',  '{"prompt": {"role": "prompter", "text": "Q", "replies": [1]}}'),
 ('two prompts',     '{"prompt": {"role": "prompter", "text": "Q", "replies": [{"role": "assistant", "text": "A", "replies": [{"role": "prompter", "text": "B", "replies": [{"role": "prompter", "text": "C"}]}]}]}}'),
 ('fractional rank', '{"prompt": {"role": "prompter", "text": "Q", "replies": [{"role": "assistant", "text": "A", "rank": 0.5}]}}'),
 ('string deleted',  '{"prompt": {"role": "prompter", "text": "Q", "deleted": "no"}}'),
 ('numeric id',      '{"prompt": {"role": "prompter", "text": "Q", "message_id": 5}}'),
 ('unanswered',      '{"prompt": {"role": "prompter", "text": "Q"}}'),
 ('user/assistant',  '{"prompt": {"role": "user", "text": "Q", "replies": [{"role": "assistant", "text": "A"}]}}')
) t(note, doc);
SELECT try_tree('{"prompt": {"role": "prompter", "text": "Q"}}', 'every') AS bad_threads;
-- a thread deeper than 1,000 messages is refused, 1,000 is fine
SELECT try_tree(('{"prompt": ' || repeat('{"role": "prompter", "text": "q", "replies": [{"role": "assistant", "text": "a", "replies": [', 500)
                 || '{"role": "prompter", "text": "last"}' || repeat(']}]}', 500) || '}')::jsonb) AS depth_1001;
SELECT try_tree(('{"prompt": ' || repeat('{"role": "prompter", "text": "q", "replies": [{"role": "assistant", "text": "a", "replies": [', 499)
                 || '{"role": "prompter", "text": "q", "replies": [{"role": "assistant", "text": "last"}]}' || repeat(']}]}', 499) || '}')::jsonb) AS depth_1000;
DROP FUNCTION try_oasst(text), bad_case(text), try_tree(jsonb, text);
