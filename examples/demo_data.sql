-- The data part of the demo: a few hundred generated conversations in three
-- shapes (chat messages, ShareGPT, prompt/response pairs), shaped into one
-- training view with the conversation functions.
CREATE TABLE demo_chats (id int PRIMARY KEY, messages jsonb);
INSERT INTO demo_chats
SELECT i,
       CASE WHEN i % 4 = 0 THEN '[{"role":"system","content":"You are Pebble, a small assistant made by the sft project."}]'::jsonb
            ELSE '[]'::jsonb END
       || (SELECT jsonb_agg(m ORDER BY k)
           FROM generate_series(1, 1 + i % 3) k,
                LATERAL (VALUES (jsonb_build_object('role', 'user', 'content', format('What is %s + %s?', i, k))),
                                (jsonb_build_object('role', 'assistant', 'content', format('%s + %s = %s.', i, k, i + k)))) v(m))
FROM generate_series(1, 200) i;

CREATE TABLE demo_sharegpt (id int PRIMARY KEY, conversations jsonb);
INSERT INTO demo_sharegpt
SELECT i, jsonb_build_array(
         jsonb_build_object('from', 'human', 'value', format('Reverse the word "%s".', w)),
         jsonb_build_object('from', 'gpt', 'value', reverse(w)))
FROM generate_series(1, 100) i, LATERAL (SELECT substr(md5(i::text), 1, 3 + i % 5) AS w) s;

CREATE TABLE demo_pairs (prompt text, response text);
INSERT INTO demo_pairs
SELECT format('Upper-case "%s".', w), upper(w)
FROM generate_series(1, 100) i, LATERAL (SELECT substr(md5((i * 31)::text), 1, 4 + i % 4) AS w) s;

-- How the raw data looks.
SELECT sft_turns(messages) AS turns, count(*) AS conversations,
       count(*) FILTER (WHERE messages->0->>'role' = 'system') AS with_system
FROM demo_chats GROUP BY 1 ORDER BY 1;

-- The training mix: every source converted to messages, system prompts
-- folded into the first user message, at most two turns.
CREATE VIEW demo_mix AS
  SELECT 'chats' AS source, sft_truncate_turns(sft_merge_system(messages), 2) AS messages
  FROM demo_chats
  UNION ALL
  SELECT 'sharegpt', sft_from_sharegpt(conversations) FROM demo_sharegpt
  UNION ALL
  SELECT 'pairs', sft_from_pair(prompt, response) FROM demo_pairs;

SELECT source, count(*) AS conversations, max(sft_turns(messages)) AS max_turns,
       bool_and(sft_is_conversation(messages)) AS all_valid
FROM demo_mix GROUP BY source ORDER BY source;

SELECT source, jsonb_pretty(messages) AS example
FROM (SELECT DISTINCT ON (source) source, messages FROM demo_mix ORDER BY source, messages::text DESC) s;

-- Bad rows are caught, and where: a message out of order.
SELECT sft_is_conversation('[{"role":"assistant","content":"hi"}]') AS valid;
SELECT sft_messages('[{"role":"assistant","content":"hi"}]');
