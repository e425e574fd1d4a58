#!/bin/bash
# sft_from_oasst over ~100,000 messages in the flat oasst export shape, side
# by side with the README's recursive CTE (indexed on message_id and
# parent_id), for threads 'all' and 'top1'.  Both must give the same rows
# before anything is timed; then 5 rounds alternating ours and the CTE.
# Prints messages read per second (median) and the ratio.
set -eu
TREES=${TREES:-10000}
ROUNDS=${ROUNDS:-5}
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION IF NOT EXISTS sft;
-- trees of a prompt, 1-3 ranked replies each with 0-2 follow-ups of 1-2
-- replies (about 10 messages a tree); ~5% deleted, ~3% rejected.
CREATE TABLE bench_oasst AS
WITH RECURSIVE m(tree, path, depth, role) AS (
  SELECT t, '0'::text, 0, 'prompter' FROM generate_series(1, $TREES) t
  UNION ALL
  SELECT tree, path || '.' || k, depth + 1, CASE role WHEN 'prompter' THEN 'assistant' ELSE 'prompter' END
  FROM m, generate_series(0, 2) k
  WHERE depth < 4 AND k < CASE WHEN depth % 2 = 0 THEN 1 + abs(hashtext(tree || path)) % 3
                               ELSE abs(hashtext(path || tree)) % 3 END
)
SELECT 't' || tree || ':' || path AS message_id,
       CASE WHEN depth > 0 THEN 't' || tree || ':' || regexp_replace(path, '\.[0-9]+$', '') END AS parent_id,
       'tree' || tree AS message_tree_id, role,
       repeat(md5(tree || path), 1 + abs(hashtext(path)) % 4) AS text,
       CASE WHEN depth > 0 AND role = 'assistant' THEN (regexp_match(path, '([0-9]+)$'))[1]::int END AS rank,
       abs(hashtext('d' || tree || path)) % 20 = 0 AS deleted,
       CASE WHEN abs(hashtext('r' || tree || path)) % 33 = 0 THEN false ELSE true END AS review_result
FROM m;
CREATE INDEX ON bench_oasst (message_id);
CREATE INDEX ON bench_oasst (parent_id);
VACUUM ANALYZE bench_oasst;

CREATE VIEW bench_cte_all AS
WITH RECURSIVE kept AS (          -- not deleted, not rejected in review
  SELECT * FROM bench_oasst WHERE NOT coalesce(deleted, false) AND coalesce(review_result, true)
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
CREATE VIEW bench_cte_top1 AS
WITH RECURSIVE kept AS (          -- not deleted, not rejected in review
  SELECT * FROM bench_oasst WHERE NOT coalesce(deleted, false) AND coalesce(review_result, true)
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

-- Median times (ms) of ours and the reference, run alternately.
CREATE FUNCTION bench_pair(ours text, theirs text, n int) RETURNS float8[] LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz; a float8[] := '{}'; b float8[] := '{}';
BEGIN
  FOR i IN 1..n LOOP
    t0 := clock_timestamp(); EXECUTE ours;   a := a || extract(epoch FROM clock_timestamp() - t0) * 1000;
    t0 := clock_timestamp(); EXECUTE theirs; b := b || extract(epoch FROM clock_timestamp() - t0) * 1000;
  END LOOP;
  RETURN ARRAY[(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(a) x),
               (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(b) x)];
END \$\$;
SQL

psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
DO $$
DECLARE d bigint;
BEGIN
  SELECT (SELECT count(*) FROM (SELECT * FROM sft_from_oasst('bench_oasst') EXCEPT ALL SELECT * FROM bench_cte_all) x)
       + (SELECT count(*) FROM (SELECT * FROM bench_cte_all EXCEPT ALL SELECT * FROM sft_from_oasst('bench_oasst')) x)
       + (SELECT count(*) FROM (SELECT * FROM sft_from_oasst('bench_oasst', 'top1') EXCEPT ALL SELECT * FROM bench_cte_top1) x)
       + (SELECT count(*) FROM (SELECT * FROM bench_cte_top1 EXCEPT ALL SELECT * FROM sft_from_oasst('bench_oasst', 'top1')) x)
    INTO d;
  IF d <> 0 THEN
    RAISE EXCEPTION 'sft_from_oasst and the recursive CTE disagree on % rows: not timing', d;
  END IF;
  RAISE NOTICE 'validated: sft_from_oasst and the recursive CTE give the same threads (all and top1)';
END $$;
SQL

psql -X -q -v ON_ERROR_STOP=1 <<SQL
\pset footer off
SELECT count(*) AS messages, count(DISTINCT message_tree_id) AS trees,
       (SELECT count(*) FROM sft_from_oasst('bench_oasst')) AS threads_all,
       (SELECT count(*) FROM sft_from_oasst('bench_oasst', 'top1')) AS threads_top1
FROM bench_oasst \gset
SELECT :messages AS messages, :trees AS trees, :threads_all AS threads_all, :threads_top1 AS threads_top1;
WITH cases(threads, ours, theirs) AS (VALUES
  ('all',  'SELECT sum(jsonb_array_length(messages)) FROM sft_from_oasst(''bench_oasst'')',
           'SELECT sum(jsonb_array_length(messages)) FROM bench_cte_all'),
  ('top1', 'SELECT sum(jsonb_array_length(messages)) FROM sft_from_oasst(''bench_oasst'', ''top1'')',
           'SELECT sum(jsonb_array_length(messages)) FROM bench_cte_top1')),
timed AS (SELECT threads, bench_pair(ours, theirs, $ROUNDS) AS ms FROM cases)
SELECT threads, round(ms[1]::numeric, 1) AS sft_ms, round(ms[2]::numeric, 1) AS cte_ms,
       round(:messages / (ms[1] / 1000))::bigint AS sft_messages_per_s,
       round(:messages / (ms[2] / 1000))::bigint AS cte_messages_per_s,
       round((ms[2] / ms[1])::numeric, 1) AS speedup
FROM timed;
SQL
psql -X -q -c "DROP VIEW bench_cte_all, bench_cte_top1" -c "DROP TABLE bench_oasst" -c "DROP FUNCTION bench_pair"
