-- sft: supervised fine-tuning of small chat language models inside PostgreSQL.
-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION sft" to load this file. \quit

-- ==== section: conversations ====
-- A conversation is a jsonb array of {"role": ..., "content": ...} messages,
-- roles system, user, assistant.  These functions are pure (IMMUTABLE) so they
-- can be used in views, WHERE clauses, indexes and parallel scans.

CREATE FUNCTION sft_messages(messages jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_messages'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_messages(jsonb) IS
'the normalised conversation: roles lower-cased, content parts joined, extra keys dropped; raises a clear error on anything that is not a conversation';

CREATE FUNCTION sft_is_conversation(messages jsonb) RETURNS boolean
    AS 'MODULE_PATHNAME', 'sft_is_conversation'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_is_conversation(jsonb) IS
'true when sft_messages() would accept the value (for WHERE clauses; never raises)';

CREATE FUNCTION sft_merge_system(messages jsonb, separator text DEFAULT E'\n\n') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_merge_system'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_merge_system(jsonb, text) IS
'folds every system message, in order, into the first user message (system + separator + user)';

CREATE FUNCTION sft_turns(messages jsonb) RETURNS integer
    AS 'MODULE_PATHNAME', 'sft_turns'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_turns(jsonb) IS
'the number of user messages answered by an assistant message';

CREATE FUNCTION sft_truncate_turns(messages jsonb, max_turns integer) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_truncate_turns'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_truncate_turns(jsonb, integer) IS
'keeps the leading system messages and the first max_turns user/assistant exchanges';

CREATE FUNCTION sft_from_sharegpt(conversations jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_from_sharegpt'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_from_sharegpt(jsonb) IS
'converts ShareGPT [{"from": "human"|"gpt"|"system", "value": ...}] into a conversation';

CREATE FUNCTION sft_from_pair(prompt text, response text, system text DEFAULT NULL) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_from_pair'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_from_pair(text, text, text) IS
'a one-turn conversation from a prompt and a response, with an optional system prompt';
-- ==== end section: conversations ====

-- ==== section: tokenizers ====
-- ==== end section: tokenizers ====

-- ==== section: templates ====
-- ==== end section: templates ====

-- ==== section: models and training ====
-- ==== end section: models and training ====

-- ==== section: generation and evaluation ====
-- ==== end section: generation and evaluation ====

-- ==== section: charts and demo ====
-- Seeing training: a sparkline for psql and an SVG chart for a browser.

CREATE FUNCTION sft_sparkline(vals float8[]) RETURNS text
    AS 'MODULE_PATHNAME', 'sft_sparkline'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_sparkline(float8[]) IS
'one block character (U+2581..U+2588) per value, scaled between the smallest and largest finite value; a space for NULL, NaN and infinity';

CREATE FUNCTION sft_loss_chart(step float8[], loss float8[], epoch_step float8[] DEFAULT NULL,
                               validation_loss float8[] DEFAULT NULL, title text DEFAULT NULL)
    RETURNS text
    AS 'MODULE_PATHNAME', 'sft_loss_chart_arrays'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_loss_chart(float8[], float8[], float8[], float8[], text) IS
'an SVG document (no scripts) of train loss per step, epoch ends, and validation loss per epoch (placed at the step where each epoch ended)';
-- ==== end section: charts and demo ====
