#!/bin/bash
# Conversation functions over 100,000 generated conversations, each side by
# side with the same operation written in plain SQL/jsonb functions.
# Prints rows/s (median of 5 runs) and the ratio C / SQL.
set -eu
ROWS=${ROWS:-100000}
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION IF NOT EXISTS sft;
-- 1-3 turns, a system prompt on every third row, contents 20-200 characters.
CREATE TABLE bench_convs AS
SELECT i AS id,
       (CASE WHEN i % 3 = 0 THEN jsonb_build_array(jsonb_build_object('role','system','content','You are a helpful assistant number ' || i)) ELSE '[]'::jsonb END)
       || (SELECT jsonb_agg(jsonb_build_object('role', CASE WHEN k % 2 = 0 THEN 'user' ELSE 'assistant' END,
                                              'content', repeat(md5((i * 7 + k)::text), 1 + (i + k) % 6)))
           FROM generate_series(0, 2 * (1 + i % 3) - 1) k) AS messages
FROM generate_series(1, $ROWS) i;
CREATE TABLE bench_sharegpt AS
SELECT id, (SELECT jsonb_agg(jsonb_build_object('from', CASE e->>'role' WHEN 'user' THEN 'human' WHEN 'assistant' THEN 'gpt' ELSE 'system' END,
                                                'value', e->'content') ORDER BY o)
            FROM jsonb_array_elements(messages) WITH ORDINALITY t(e, o)) AS conversations
FROM bench_convs;
CREATE TABLE bench_pairs AS
SELECT id, messages->-2->>'content' AS prompt, messages->-1->>'content' AS response FROM bench_convs;
VACUUM ANALYZE bench_convs, bench_sharegpt, bench_pairs;

-- Plain SQL versions of each function (string content only; they check less).
CREATE FUNCTION sql_messages(m jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$
  SELECT jsonb_agg(jsonb_build_object('role', lower(e->>'role'), 'content', e->>'content') ORDER BY o)
  FROM jsonb_array_elements(m) WITH ORDINALITY t(e, o) \$\$;
CREATE FUNCTION sql_is_conversation(m jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS \$\$
  SELECT jsonb_typeof(m) = 'array' AND jsonb_array_length(m) > 0 AND bool_and(
           jsonb_typeof(e) = 'object' AND lower(e->>'role') IN ('system','user','assistant')
           AND jsonb_typeof(e->'content') = 'string'
           AND (lower(e->>'role') = 'system') = (o <= (SELECT count(*) FROM jsonb_array_elements(m) x WHERE x->>'role' = 'system'))
           AND (lower(e->>'role') = 'system' OR prev IS DISTINCT FROM lower(e->>'role')))
  FROM (SELECT e, o, lag(lower(e->>'role')) OVER (ORDER BY o) AS prev
        FROM jsonb_array_elements(m) WITH ORDINALITY t(e, o)) s \$\$;
CREATE FUNCTION sql_turns(m jsonb) RETURNS int LANGUAGE sql IMMUTABLE AS \$\$
  SELECT count(*)::int FROM (SELECT e->>'role' AS r, lag(e->>'role') OVER (ORDER BY o) AS p
                             FROM jsonb_array_elements(m) WITH ORDINALITY t(e, o)) s
  WHERE r = 'assistant' AND p = 'user' \$\$;
CREATE FUNCTION sql_merge_system(m jsonb, sep text DEFAULT E'\n\n') RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$
  WITH msgs AS (SELECT e, o FROM jsonb_array_elements(m) WITH ORDINALITY t(e, o)),
       sys AS (SELECT string_agg(e->>'content', sep ORDER BY o) AS s FROM msgs WHERE e->>'role' = 'system'),
       first_user AS (SELECT min(o) AS o FROM msgs WHERE e->>'role' = 'user')
  SELECT jsonb_agg(CASE WHEN msgs.o = first_user.o AND sys.s IS NOT NULL
                        THEN jsonb_build_object('role', 'user', 'content', sys.s || sep || (e->>'content'))
                        ELSE e END ORDER BY msgs.o)
  FROM msgs, sys, first_user WHERE e->>'role' <> 'system' \$\$;
CREATE FUNCTION sql_truncate_turns(m jsonb, n int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$
  SELECT jsonb_agg(e ORDER BY o) FROM (
    SELECT e, o, count(*) FILTER (WHERE e->>'role' = 'user') OVER (ORDER BY o) AS users
    FROM jsonb_array_elements(m) WITH ORDINALITY t(e, o)) s WHERE users <= n \$\$;
CREATE FUNCTION sql_from_sharegpt(c jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$
  SELECT jsonb_agg(jsonb_build_object('role', CASE e->>'from' WHEN 'human' THEN 'user' WHEN 'gpt' THEN 'assistant'
                                              WHEN 'system' THEN 'system' END, 'content', e->>'value') ORDER BY o)
  FROM jsonb_array_elements(c) WITH ORDINALITY t(e, o) \$\$;
CREATE FUNCTION sql_from_pair(p text, r text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$
  SELECT jsonb_build_array(jsonb_build_object('role','user','content',p), jsonb_build_object('role','assistant','content',r)) \$\$;

-- Median of n timed runs of a query, in milliseconds.
CREATE FUNCTION bench_ms(q text, n int DEFAULT 5) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz; times float8[] := '{}';
BEGIN
  FOR i IN 1..n LOOP
    t0 := clock_timestamp();
    EXECUTE q;
    times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
  END LOOP;
  RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(times) x);
END \$\$;
SQL

# Results must agree before anything is timed.
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
DO $$
BEGIN
  IF NOT (SELECT bool_and(sft_messages(messages) = sql_messages(messages)
               AND sft_turns(messages) = sql_turns(messages)
               AND sft_is_conversation(messages) = sql_is_conversation(messages)
               AND sft_merge_system(messages) = sql_merge_system(messages)
               AND sft_truncate_turns(messages, 2) = sql_truncate_turns(messages, 2))
          FROM (SELECT messages FROM bench_convs LIMIT 2000) s)
     OR NOT (SELECT bool_and(sft_from_sharegpt(conversations) = sql_from_sharegpt(conversations))
             FROM (SELECT conversations FROM bench_sharegpt LIMIT 2000) s) THEN
    RAISE EXCEPTION 'C and SQL versions disagree: not timing';
  END IF;
  RAISE NOTICE 'validated: C and SQL versions agree on 2,000 rows';
END $$;
SQL

psql -X -q -v ON_ERROR_STOP=1 <<SQL
\pset footer off
WITH cases(fn, c_query, sql_query) AS (VALUES
  ('sft_messages',       'SELECT count(sft_messages(messages)) FROM bench_convs',          'SELECT count(sql_messages(messages)) FROM bench_convs'),
  ('sft_is_conversation','SELECT count(*) FILTER (WHERE sft_is_conversation(messages)) FROM bench_convs', 'SELECT count(*) FILTER (WHERE sql_is_conversation(messages)) FROM bench_convs'),
  ('sft_turns',          'SELECT sum(sft_turns(messages)) FROM bench_convs',               'SELECT sum(sql_turns(messages)) FROM bench_convs'),
  ('sft_merge_system',   'SELECT count(sft_merge_system(messages)) FROM bench_convs',      'SELECT count(sql_merge_system(messages)) FROM bench_convs'),
  ('sft_truncate_turns', 'SELECT count(sft_truncate_turns(messages, 2)) FROM bench_convs', 'SELECT count(sql_truncate_turns(messages, 2)) FROM bench_convs'),
  ('sft_from_sharegpt',  'SELECT count(sft_from_sharegpt(conversations)) FROM bench_sharegpt', 'SELECT count(sql_from_sharegpt(conversations)) FROM bench_sharegpt'),
  ('sft_from_pair',      'SELECT count(sft_from_pair(prompt, response)) FROM bench_pairs', 'SELECT count(sql_from_pair(prompt, response)) FROM bench_pairs')),
timed AS (SELECT fn, bench_ms(c_query) AS c_ms, bench_ms(sql_query) AS sql_ms FROM cases)
SELECT fn AS function,
       round($ROWS / (c_ms / 1000))::bigint AS c_rows_per_s,
       round($ROWS / (sql_ms / 1000))::bigint AS sql_rows_per_s,
       round((sql_ms / c_ms)::numeric, 1) AS speedup
FROM timed;
SQL
psql -X -q -c "DROP TABLE bench_convs, bench_sharegpt, bench_pairs" -c "DROP FUNCTION sql_messages, sql_is_conversation, sql_turns, sql_merge_system, sql_truncate_turns, sql_from_sharegpt, sql_from_pair, bench_ms"
