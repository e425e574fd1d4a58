-- The demo's data, generated here (no downloads): conversations that teach a
-- small model who it is and four skills whose answers can be checked.
--
--   identity  "What is your name?" / "Who made you?" and variants -> fixed answers
--   upper     "Upper-case the word: tokado"           -> TOKADO
--   reverse   "Reverse the word: tokado"              -> odakot
--   count     "How many letters are in tokado?"       -> 6
--   add       "What is 23 + 9?"                       -> 32
--
-- Every skill item (a word, a pair of numbers) falls into the train,
-- validation or test split by a hash of the item, so the held-out questions
-- asked at the end are not in the training data, not even with other
-- wording.  Identity has phrasings that only the test split uses.
--
-- The raw data comes in the three shapes real datasets use: chat messages
-- (demo_chats, some with a system prompt, some with two or three turns),
-- ShareGPT (demo_sharegpt) and prompt/response pairs (demo_pairs); the view
-- built in demo_view.sql converts and filters them as the seed recipe does.

-- A stable hash in [0, 1000) (md5, not hashtext: the same on every server).
CREATE FUNCTION demo_hash(key text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ((get_byte(decode(md5(key), 'hex'), 0) << 8) + get_byte(decode(md5(key), 'hex'), 1)) % 1000;

-- Split of an item: 10% test, 5% validation, the rest train.
CREATE FUNCTION demo_split(skill text, item text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN demo_hash(skill || ':' || item) < 100 THEN 'test'
            WHEN demo_hash(skill || ':' || item) < 150 THEN 'validation'
            ELSE 'train' END;

-- Pseudo-words of 3 to 6 letters, alternating consonants and vowels so they
-- read like words; distinct.
CREATE TABLE demo_words AS
SELECT DISTINCT ON (word) word
FROM (SELECT (SELECT string_agg(CASE WHEN k % 2 = 0
                                     THEN substr('bcdfghjklmnprstvwz', 1 + get_byte(h, k) % 18, 1)
                                     ELSE substr('aeiou', 1 + get_byte(h, k) % 5, 1) END, '' ORDER BY k)
              FROM generate_series(0, 2 + get_byte(h, 15) % 4) k) AS word
      FROM generate_series(1, 6000) i, LATERAL (SELECT decode(md5('word' || i), 'hex') AS h) s) w
ORDER BY word;

-- ---------------------------------------------------------------------------
-- Skill items: one row per question with its exact expected answer.
-- ---------------------------------------------------------------------------
CREATE TABLE demo_items (
    id serial PRIMARY KEY,
    skill text NOT NULL,
    item text NOT NULL,
    question text NOT NULL,
    answer text NOT NULL,
    split text NOT NULL
);

-- Several phrasings per skill; an item gets one by its hash.
INSERT INTO demo_items (skill, item, question, answer, split)
SELECT skill, word,
       format((ARRAY[q1, q2, q3])[1 + demo_hash('q' || skill || word) % 3], word),
       answer, demo_split(skill, word)
FROM demo_words,
     LATERAL (VALUES
       ('upper', 'Upper-case the word: %s', 'In capital letters: %s', 'Convert to upper case: %s', upper(word)),
       ('reverse', 'Reverse the word: %s', 'Spell backwards: %s', 'Write in reverse: %s', reverse(word)),
       ('count', 'How many letters are in %s?', 'Count the letters of %s', 'How long is the word %s?', length(word)::text)
     ) v(skill, q1, q2, q3, answer)
-- each skill has words of its own (the copying skills, which take longest to
-- learn, two fifths each; counting one fifth)
WHERE demo_hash('pick' || word) % 5 = ANY (CASE skill WHEN 'upper' THEN '{0,1}'::int[]
                                                      WHEN 'reverse' THEN '{2,3}'::int[] ELSE '{4}'::int[] END);

INSERT INTO demo_items (skill, item, question, answer, split)
SELECT 'add', a || '+' || b,
       format((ARRAY['What is %s + %s?', 'Add %s and %s.', 'Compute %s + %s.'])[1 + demo_hash('qadd' || a || '+' || b) % 3], a, b),
       (a + b)::text, demo_split('add', a || '+' || b)
FROM generate_series(0, 29) a, generate_series(0, 29) b;

-- Identity: fixed answers.  The test split has phrasings never trained on,
-- plus the canonical questions themselves (trained, asked exactly).
CREATE TABLE demo_identity (kind text, question text, split text);
INSERT INTO demo_identity VALUES
  ('name', 'What is your name?', 'train'),
  ('name', 'What''s your name?', 'train'),
  ('name', 'Who are you?', 'train'),
  ('name', 'Tell me your name.', 'train'),
  ('name', 'What should I call you?', 'train'),
  ('name', 'Introduce yourself.', 'train'),
  ('name', 'Do you have a name?', 'train'),
  ('name', 'What are you called?', 'train'),
  ('name', 'Are you ChatGPT?', 'train'),
  ('name', 'Which model are you?', 'train'),
  ('name', 'May I know your name?', 'test'),
  ('name', 'How should I address you?', 'test'),
  ('maker', 'Who made you?', 'train'),
  ('maker', 'Who created you?', 'train'),
  ('maker', 'Who built you?', 'train'),
  ('maker', 'Who trained you?', 'train'),
  ('maker', 'Where do you come from?', 'train'),
  ('maker', 'Which company made you?', 'train'),
  ('maker', 'Who is your creator?', 'train'),
  ('maker', 'Who developed you?', 'train'),
  ('maker', 'Who designed you?', 'test'),
  ('maker', 'Who is behind you?', 'test');

CREATE FUNCTION demo_identity_answer(kind text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE kind
  WHEN 'name' THEN 'I am Pebble, a small language model trained with sft inside PostgreSQL.'
  ELSE 'I was made by the sft project: trained from scratch inside PostgreSQL.' END;

-- Trained phrasings in a few surface forms (greeting, case, punctuation).
INSERT INTO demo_items (skill, item, question, answer, split)
SELECT 'identity', kind || ':' || question, form, demo_identity_answer(kind), 'train'
FROM demo_identity,
     LATERAL (VALUES (question), (lower(question)), (rtrim(question, '?.')), ('Hi! ' || question),
                     ('Hello. ' || question), ('Quick question: ' || lower(question))) f(form)
WHERE split = 'train';
INSERT INTO demo_items (skill, item, question, answer, split)
SELECT 'identity', kind || ':' || question, question, demo_identity_answer(kind), 'test'
FROM demo_identity
WHERE split = 'test' OR question IN ('What is your name?', 'Who made you?');

SELECT skill, split, count(*) AS items FROM demo_items GROUP BY 1, 2 ORDER BY 1, 2;

-- ---------------------------------------------------------------------------
-- The raw conversations, in three shapes.
-- ---------------------------------------------------------------------------
-- Training rows draw from the train split only; identity rows are repeated
-- so that they are a good share of the mix.
CREATE TEMP TABLE train_items AS
SELECT row_number() OVER (ORDER BY md5(id || ':' || r)) AS n, skill, question, answer
FROM demo_items, generate_series(1, CASE WHEN skill = 'identity' THEN 2 ELSE 1 END) r
WHERE split = 'train';

-- 1. chat messages, a quarter with a system prompt, a fifth with a second
--    turn, a few with a third turn (the view drops those: at most two turns),
--    and a few far too long (the view drops those: at most 512 tokens).
CREATE TABLE demo_chats (id int PRIMARY KEY, source text, messages jsonb);
INSERT INTO demo_chats
SELECT t.n, 'chats',
       CASE demo_hash('sys' || t.n) % 8
            WHEN 0 THEN '[{"role":"system","content":"You are Pebble. Answer with the result only."}]'::jsonb
            WHEN 1 THEN '[{"role":"system","content":"Be brief."}]'::jsonb
            ELSE '[]'::jsonb END
       || jsonb_build_array(jsonb_build_object('role', 'user', 'content', t.question),
                            jsonb_build_object('role', 'assistant', 'content', t.answer))
       || CASE WHEN demo_hash('turns' || t.n) % 5 = 0
               THEN jsonb_build_array(jsonb_build_object('role', 'user', 'content', t2.question),
                                      jsonb_build_object('role', 'assistant', 'content', t2.answer))
               ELSE '[]'::jsonb END
       || CASE WHEN demo_hash('turns' || t.n) % 50 = 0
               THEN jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'Thanks!'),
                                      jsonb_build_object('role', 'assistant', 'content', 'You are welcome.'))
               ELSE '[]'::jsonb END
FROM train_items t
-- the second exchange: another training item, picked by a fixed permutation
JOIN train_items t2 ON t2.n = 1 + (t.n * 7919) % (SELECT count(*) FROM train_items)
WHERE t.n % 10 < 6;

INSERT INTO demo_chats
SELECT 1000000 + i, 'chats',
       jsonb_build_array(
         jsonb_build_object('role', 'user', 'content', 'Upper-case this text: ' || repeat('pebble stone ', 50)),
         jsonb_build_object('role', 'assistant', 'content', upper(repeat('pebble stone ', 50))))
FROM generate_series(1, 20) i;

-- 2. ShareGPT, as FastChat and many datasets store conversations
CREATE TABLE demo_sharegpt (id int PRIMARY KEY, conversations jsonb);
INSERT INTO demo_sharegpt
SELECT n, jsonb_build_array(jsonb_build_object('from', 'human', 'value', question),
                            jsonb_build_object('from', 'gpt', 'value', answer))
FROM train_items
WHERE n % 10 BETWEEN 6 AND 7;

-- 3. prompt/response pairs
CREATE TABLE demo_pairs (id int PRIMARY KEY, prompt text, response text);
INSERT INTO demo_pairs
SELECT n, question, answer
FROM train_items
WHERE n % 10 >= 8;

-- Validation conversations (keep => 'best' picks the epoch by their loss)
-- and the held-out test questions, asked before and after training.
CREATE TABLE demo_validation AS
SELECT sft_from_pair(question, answer) AS messages
FROM demo_items WHERE split = 'validation';

CREATE TABLE demo_test AS
SELECT skill, question, answer
FROM (SELECT *, row_number() OVER (PARTITION BY skill ORDER BY md5('test' || id)) AS n
      FROM demo_items WHERE split = 'test') s
WHERE n <= 40;

-- How the raw data looks.
SELECT 'chats' AS shape, count(*) AS conversations,
       count(*) FILTER (WHERE messages->0->>'role' = 'system') AS with_system_prompt,
       count(*) FILTER (WHERE sft_turns(messages) = 2) AS two_turns,
       count(*) FILTER (WHERE sft_turns(messages) > 2) AS more_turns
FROM demo_chats
UNION ALL SELECT 'sharegpt', count(*), 0, 0, 0 FROM demo_sharegpt
UNION ALL SELECT 'pairs', count(*), 0, 0, 0 FROM demo_pairs;

SELECT jsonb_pretty(messages) AS example FROM demo_chats
WHERE messages->0->>'role' = 'system' AND sft_turns(messages) = 2 ORDER BY id LIMIT 1;
SELECT conversations AS sharegpt_example FROM demo_sharegpt ORDER BY id LIMIT 1;
SELECT skill, count(*) AS test_questions FROM demo_test GROUP BY skill ORDER BY skill;
