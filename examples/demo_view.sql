-- The training view, shaped as the seed recipe shapes its sources: every
-- shape converted to messages, system prompts folded into the first user
-- message, at most two turns, at most 512 tokens of the model's template.
-- A view, not a copy: sft_train reads it when the run starts.
CREATE VIEW demo_train AS
SELECT messages
FROM (SELECT sft_merge_system(messages) AS messages FROM demo_chats
      UNION ALL
      SELECT sft_from_sharegpt(conversations) FROM demo_sharegpt
      UNION ALL
      SELECT sft_from_pair(prompt, response) FROM demo_pairs) converted
WHERE sft_turns(messages) <= 2
  AND sft_token_count('pebble-bytes', messages) <= 512;

SELECT count(*) AS conversations,
       count(*) FILTER (WHERE sft_turns(messages) = 2) AS two_turns,
       min(sft_token_count('pebble-bytes', messages)) AS min_tokens,
       round(avg(sft_token_count('pebble-bytes', messages))) AS avg_tokens,
       max(sft_token_count('pebble-bytes', messages)) AS max_tokens,
       sum(sft_token_count('pebble-bytes', messages)) AS tokens
FROM demo_train;

-- What the filters left out.
SELECT count(*) FILTER (WHERE sft_turns(messages) > 2) AS over_two_turns,
       count(*) FILTER (WHERE sft_token_count('pebble-bytes', messages) > 512) AS over_512_tokens
FROM (SELECT sft_merge_system(messages) AS messages FROM demo_chats) c;

-- A merged system prompt, as the model will see it.
SELECT sft_render('pebble-bytes', messages) AS rendered
FROM demo_train WHERE messages->0->>'content' LIKE 'Be brief.%' LIMIT 1;
