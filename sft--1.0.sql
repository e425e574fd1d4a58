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
-- Message trees (OpenAssistant oasst1/oasst2): one conversation per thread.
-- threads => 'all' (every root-to-leaf path) or 'top1' (the best-ranked path of
-- each tree); deleted and review-rejected messages are dropped with their
-- subtrees, prompts without a kept reply too (every thread ends with an
-- assistant reply).  The table is read as the caller (privileges and RLS).
CREATE FUNCTION sft_from_oasst(source regclass, threads text DEFAULT 'all',
                               tree_column text DEFAULT 'message_tree_id',
                               id_column text DEFAULT 'message_id',
                               parent_column text DEFAULT 'parent_id',
                               role_column text DEFAULT 'role',
                               text_column text DEFAULT 'text',
                               rank_column text DEFAULT 'rank',
                               deleted_column text DEFAULT 'deleted',
                               review_column text DEFAULT 'review_result')
    RETURNS TABLE (tree_id text, last_message_id text, messages jsonb)
    AS 'MODULE_PATHNAME', 'sft_from_oasst'
    LANGUAGE C STABLE ROWS 10000;
COMMENT ON FUNCTION sft_from_oasst(regclass, text, text, text, text, text, text, text, text, text) IS
'one conversation per thread of the message trees in source (the flat oasst export: one row per message), read as the caller; threads ''all'' or ''top1''; deleted or review-rejected messages dropped with their subtrees; rank_column, deleted_column, review_column may be NULL when the source has no such column';

CREATE FUNCTION sft_from_oasst_tree(tree jsonb, threads text DEFAULT 'all') RETURNS SETOF jsonb
    AS 'MODULE_PATHNAME', 'sft_from_oasst_tree'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 4;
COMMENT ON FUNCTION sft_from_oasst_tree(jsonb, text) IS
'one conversation per thread of a tree of the nested oasst export (*.trees.jsonl: {"prompt": {..., "replies": [...]}}); same rules as sft_from_oasst';
-- Turn lists (UltraChat's "data": bare strings, user first).
CREATE FUNCTION sft_from_turns(turns jsonb, first_role text DEFAULT 'user', system text DEFAULT NULL) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_from_turns'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_from_turns(jsonb, text, text) IS
'a conversation from a JSON array of strings, alternating from first_role (''user''; with ''assistant'' the leading assistant turn is dropped, as a conversation starts with the user), with an optional system prompt; NULL turns give NULL';
CREATE FUNCTION sft_from_turns(turns text[], first_role text DEFAULT 'user', system text DEFAULT NULL) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_from_turns_array'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_from_turns(text[], text, text) IS
'sft_from_turns over a text array';

-- Placeholders (hard-coded identity data) and identity system prompts.
CREATE FUNCTION sft_fill(messages jsonb, replacements jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_fill'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_fill(jsonb, jsonb) IS
'replaces each key of replacements (literal text such as <|MODEL_NAME|> or {{name}}) by its string value in every message''s content, in one pass (values are not rescanned; the longest key wins)';
CREATE FUNCTION sft_placeholders(messages jsonb) RETURNS text[]
    AS 'MODULE_PATHNAME', 'sft_placeholders'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_placeholders(jsonb) IS
'the distinct placeholder-looking spans left in the messages (<|UPPER_CASE|> and {{word}}), sorted; empty when none';
CREATE FUNCTION sft_add_system(messages jsonb, system text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_add_system'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_add_system(jsonb, text) IS
'prepends a system message unless the conversation already starts with one';
-- TRL prompt-completion rows and Alpaca rows.
CREATE FUNCTION sft_from_prompt_completion(prompt jsonb, completion jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_from_prompt_completion'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_from_prompt_completion(jsonb, jsonb) IS
'prompt followed by completion (each a message array, or a JSON string: a user prompt, an assistant completion); the loss is on the completion only (assistant messages of the prompt get "weight": 0)';
CREATE FUNCTION sft_from_alpaca(instruction text, input text, output text, system text DEFAULT NULL,
                                history jsonb DEFAULT NULL, separator text DEFAULT E'\n') RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sft_from_alpaca'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_from_alpaca(text, text, text, text, jsonb, text) IS
'an Alpaca row as a conversation: [system], history [[instruction, response], ...] pairs, then instruction + separator + input (input omitted when NULL or empty) answered by output';
-- ==== end section: conversations ====

-- ==== section: tokenizers ====
-- One row per tokenizer: the source files as loaded plus what was derived
-- from them.  Readable by everyone; written only through the functions below,
-- which check that the caller owns the row (or is superuser) and then write it
-- with the table owner's rights.  Marked for pg_dump.
CREATE TABLE sft_tokenizers (
    name text PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 63),
    kind text NOT NULL,                 -- byte_bpe | sentencepiece_bpe
    vocab_size integer NOT NULL,
    special_tokens text[] NOT NULL,     -- added tokens marked special, in id order
    chat_template text CHECK (chat_template IN ('chatml', 'llama3', 'llama2', 'qwen3', 'jinja')),
    chat_template_source text,          -- the Jinja source when chat_template = 'jinja'
    default_system text,                -- inserted when a conversation has no system message
    end_of_turn_token text,             -- the token that closes an assistant turn
    bos_token text,                     -- as tokenizer_config.json says
    eos_token text,
    owner regrole NOT NULL DEFAULT current_user::regrole,
    created timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL,               -- tokenizer.json, or vocab.json when merges is set
    merges text,                        -- merges.txt (GPT-2 style import)
    config jsonb,                       -- tokenizer_config.json
    CHECK (default_system IS NULL OR chat_template IS NOT NULL),
    CHECK ((chat_template = 'jinja') = (chat_template_source IS NOT NULL))
);
COMMENT ON TABLE sft_tokenizers IS
  'Tokenizers loaded with sft_tokenizer_load() or sft_tokenizer_import(); change them with sft_tokenizer_set_template() and sft_tokenizer_drop()';
SELECT pg_catalog.pg_extension_config_dump('sft_tokenizers', '');
REVOKE ALL ON sft_tokenizers FROM PUBLIC;
GRANT SELECT ON sft_tokenizers TO PUBLIC;

CREATE FUNCTION sft_tokenizer_load(name text, tokenizer_json text, tokenizer_config_json text DEFAULT NULL,
    OUT tokenizer text, OUT kind text, OUT vocab_size integer, OUT chat_template text, OUT default_system text)
RETURNS record
AS 'MODULE_PATHNAME', 'sft_tokenizer_load' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_tokenizer_load(text, text, text) IS
  'Adds a tokenizer from tokenizer.json text (and tokenizer_config.json text); the chat template is detected from the config';

CREATE FUNCTION sft_tokenizer_import(name text, directory text,
    OUT tokenizer text, OUT kind text, OUT vocab_size integer, OUT chat_template text, OUT default_system text)
RETURNS record
AS 'MODULE_PATHNAME', 'sft_tokenizer_import' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_tokenizer_import(text, text) IS
  'Adds a tokenizer from a server directory: tokenizer.json (+ tokenizer_config.json), or vocab.json + merges.txt; superusers and pg_read_server_files members only';

CREATE FUNCTION sft_tokenizer_drop(name text) RETURNS void
AS 'MODULE_PATHNAME', 'sft_tokenizer_drop' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_tokenizer_drop(text) IS
  'Removes a tokenizer (its owner or a superuser)';

CREATE FUNCTION sft_tokenize(tokenizer text, input text, split_special boolean DEFAULT false)
RETURNS integer[]
AS 'MODULE_PATHNAME', 'sft_tokenize' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_tokenize(text, text, boolean) IS
  'Token ids of a text; special-token text is plain text unless split_special';

CREATE FUNCTION sft_detokenize(tokenizer text, ids integer[], skip_special boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'sft_detokenize' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_detokenize(text, integer[], boolean) IS
  'Text of token ids';

CREATE FUNCTION sft_token_count(tokenizer text, input text) RETURNS integer
AS 'MODULE_PATHNAME', 'sft_token_count' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_token_count(text, text) IS
  'Number of tokens of a text';
-- ==== end section: tokenizers ====

-- ==== section: templates ====
CREATE FUNCTION sft_tokenizer_set_template(name text, template text, default_system text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'sft_tokenizer_set_template' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_tokenizer_set_template(text, text, text) IS
  'Chooses the chat template of a tokenizer: a built-in name (chatml, llama3, llama2, qwen3), Jinja source (rendered as transformers does), or NULL for none; and the default system prompt of a built-in template (NULL for none)';

CREATE FUNCTION sft_token_count(tokenizer text, messages jsonb, template_kwargs jsonb DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'sft_token_count_messages' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_token_count(text, jsonb, jsonb) IS
  'Number of tokens of a conversation rendered with the tokenizer''s chat template (template_kwargs: extra template variables), as training sees it';

CREATE FUNCTION sft_render(tokenizer text, messages jsonb, add_generation_prompt boolean DEFAULT false,
    template_kwargs jsonb DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'sft_render' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_render(text, jsonb, boolean, jsonb) IS
  'A conversation rendered with the tokenizer''s chat template (template_kwargs: extra template variables such as {"enable_thinking": false})';

CREATE FUNCTION sft_encode(tokenizer text, messages jsonb, max_length integer DEFAULT NULL,
    train_on text DEFAULT 'all_assistant', template_kwargs jsonb DEFAULT NULL,
    OUT input_ids integer[], OUT loss_mask integer[], OUT truncated boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'sft_encode' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_encode(text, jsonb, integer, text, jsonb) IS
  'Token ids and loss mask (1 on assistant replies and their end-of-turn token) of a training conversation; truncated tells whether max_length cut it';

CREATE FUNCTION sft_chat_template_jinja(tokenizer text) RETURNS text
AS 'MODULE_PATHNAME', 'sft_chat_template_jinja' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_chat_template_jinja(text) IS
  'The tokenizer''s chat template (with its default system prompt) as a Hugging Face Jinja chat_template, as exports write it into tokenizer_config.json';
-- ==== end section: templates ====

-- ==== section: models and training ====
-- Models are rows of sft_models whose weights live in a large object owned by
-- the model's owner.  Training runs are rows of sft_run_table (read them
-- through the sft_runs view, which also shows runs a crash left behind as
-- interrupted), with per-step rows in sft_run_log and per-epoch rows (losses,
-- checkpoint large object) in sft_run_epochs.
--
-- Who may do what: everyone may read the catalog tables.  Only a model's
-- owner (or a superuser) may drop it, export it, or train from it.  Reading
-- the weights (generation, evaluation) needs SELECT on the weights large
-- object, which its owner has and may grant:
--   SELECT format('GRANT SELECT ON LARGE OBJECT %s TO alice', weights)
--     FROM sft_models WHERE name = 'm' \gexec
-- The tables are written only by the functions below (which act as the
-- tables' owner for that), never directly by users.

CREATE TABLE sft_models (
    name        text PRIMARY KEY CHECK (name <> ''),
    config      jsonb NOT NULL,
    tokenizer   text NOT NULL REFERENCES sft_tokenizers (name),
    dtype       text NOT NULL DEFAULT 'float32',
    parent      text,
    run_id      bigint,
    owner       regrole NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    parameters  bigint NOT NULL,
    size_bytes  bigint NOT NULL,
    weights     oid NOT NULL,
    system_prompt text CHECK (system_prompt <> ''),  -- sft_model_set_system
    -- a LoRA adapter: PEFT's adapter_config.json object; parent is its base
    adapter     jsonb CHECK (adapter IS NULL OR parent IS NOT NULL)
);
COMMENT ON TABLE sft_models IS
'models: architecture config (HF config.json as jsonb), tokenizer, parent model and producing run; weights in the large object "weights" (sft checkpoint format), owned by "owner"; an adapter (adapter not null: PEFT adapter_config.json) holds only its LoRA tensors (PEFT adapter_model.safetensors bytes) and applies to its parent';

CREATE TABLE sft_run_table (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner           regrole NOT NULL,
    source          text NOT NULL,
    base            text NOT NULL,
    output          text NOT NULL,
    epochs          integer NOT NULL,
    learning_rate   float8 NOT NULL,
    max_length      integer NOT NULL,
    batch_size      integer NOT NULL,
    options         jsonb NOT NULL,
    threads         integer NOT NULL,
    max_memory_mb   integer NOT NULL,   -- the caller's sft.max_memory, checked again with the data
    tokenizer       text NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                                      'cancelled', 'interrupted')),
    attempts        integer NOT NULL DEFAULT 0,
    created         timestamptz NOT NULL DEFAULT now(),
    started         timestamptz,
    finished        timestamptz,
    rows_read       bigint,
    rows_used       bigint,
    rows_too_long   bigint,
    rows_truncated  bigint,
    rows_no_assistant bigint,
    rows_null       bigint,
    validation_rows bigint,
    tokens          bigint,
    target_tokens   bigint,
    load_seconds    float8,
    data_fingerprint bigint,
    steps           bigint,
    steps_done      bigint NOT NULL DEFAULT 0,
    epochs_done     integer NOT NULL DEFAULT 0,
    final_loss      float8,
    error           text
);
COMMENT ON TABLE sft_run_table IS
'training runs as stored; read them through the sft_runs view';
-- A run holds its output name until it succeeds or is dropped.
CREATE UNIQUE INDEX sft_run_table_output ON sft_run_table (output) WHERE status <> 'succeeded';

CREATE TABLE sft_run_log (
    run_id      bigint NOT NULL REFERENCES sft_run_table (id) ON DELETE CASCADE,
    step        bigint NOT NULL,
    epoch       integer NOT NULL,
    loss        float8 NOT NULL,
    learning_rate float8 NOT NULL,
    grad_norm   float8 NOT NULL,
    tokens_per_s float8 NOT NULL,
    logged      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, step)
);
COMMENT ON TABLE sft_run_log IS
'one row every log_every optimizer steps: mean loss per target token of that step, learning rate, gradient norm before clipping, training tokens/s';

CREATE TABLE sft_run_epochs (
    run_id          bigint NOT NULL REFERENCES sft_run_table (id) ON DELETE CASCADE,
    epoch           integer NOT NULL,
    step            bigint NOT NULL,
    train_loss      float8 NOT NULL,
    validation_loss float8,
    checkpoint      oid,
    finished        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, epoch)
);
COMMENT ON TABLE sft_run_epochs IS
'one row per finished epoch: mean training loss per target token, validation loss, and the checkpoint large object (weights + AdamW state) while it is kept';

SELECT pg_catalog.pg_extension_config_dump('sft_models', '');
SELECT pg_catalog.pg_extension_config_dump('sft_run_table', '');
SELECT pg_catalog.pg_extension_config_dump('sft_run_log', '');
SELECT pg_catalog.pg_extension_config_dump('sft_run_epochs', '');
SELECT pg_catalog.pg_extension_config_dump('sft_run_table_id_seq', '');

REVOKE ALL ON sft_models, sft_run_table, sft_run_log, sft_run_epochs FROM PUBLIC;
GRANT SELECT ON sft_models, sft_run_table, sft_run_log, sft_run_epochs TO PUBLIC;

CREATE FUNCTION sft_run_active(run bigint) RETURNS boolean
    AS 'MODULE_PATHNAME', 'sft_run_active'
    LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION sft_run_active(bigint) IS
'true while a background worker owns the run in this database (false after the run ended, or after a crash or restart)';

CREATE VIEW sft_runs AS
SELECT r.id, r.owner, r.source, r.base, r.output, r.epochs, r.learning_rate,
       r.max_length, r.batch_size, r.options, r.threads, r.max_memory_mb, r.tokenizer,
       CASE WHEN r.status OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running'])
                 AND NOT @extschema@.sft_run_active(r.id)
            THEN 'interrupted' ELSE r.status END AS status,
       r.attempts, r.created, r.started, r.finished, r.rows_read, r.rows_used,
       r.rows_too_long, r.rows_truncated, r.rows_no_assistant, r.rows_null,
       r.validation_rows, r.tokens, r.target_tokens, r.load_seconds, r.data_fingerprint, r.steps, r.steps_done,
       r.epochs_done, r.final_loss, r.error
  FROM @extschema@.sft_run_table r;
COMMENT ON VIEW sft_runs IS
'training runs; status is interrupted for a run left queued/running by a crash, a restart or a terminated worker (resume it with sft_resume)';
GRANT SELECT ON sft_runs TO PUBLIC;

CREATE FUNCTION sft_progress_rows(
    OUT run bigint, OUT pid integer, OUT phase text, OUT epoch integer,
    OUT epochs integer, OUT step bigint, OUT steps bigint, OUT rows_read bigint,
    OUT loss float8, OUT learning_rate float8, OUT grad_norm float8,
    OUT tokens_per_s float8, OUT eta interval, OUT started timestamptz,
    OUT updated timestamptz, OUT cancel_requested boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sft_progress_rows'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_progress_rows() IS
'live state of the training runs of this database, from shared memory (see the sft_progress view)';

-- Defined here rather than with the charts: the progress view uses it.
CREATE FUNCTION sft_sparkline(vals float8[]) RETURNS text
    AS 'MODULE_PATHNAME', 'sft_sparkline'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION sft_sparkline(float8[]) IS
'one block character (U+2581..U+2588) per value, scaled between the smallest and largest finite value; a space for NULL, NaN and infinity';

CREATE VIEW sft_progress AS
SELECT p.run, r.output, r.owner,
       CASE WHEN p.phase OPERATOR(pg_catalog.=) 'starting' THEN 'queued' ELSE 'running' END AS status,
       p.phase, p.epoch, p.epochs, p.step, p.steps,
       p.rows_read, p.loss, p.learning_rate, p.grad_norm, p.tokens_per_s,
       p.eta, p.started, p.updated, p.pid, p.cancel_requested,
       -- the last 30 logged losses, oldest first, as block characters
       @extschema@.sft_sparkline(ARRAY(SELECT loss FROM (SELECT l.step, l.loss FROM @extschema@.sft_run_log l
                                             WHERE l.run_id OPERATOR(pg_catalog.=) p.run
                                             ORDER BY l.step DESC LIMIT 30) recent
                           ORDER BY step)) AS recent_loss
  FROM @extschema@.sft_progress_rows() p
  LEFT JOIN @extschema@.sft_run_table r ON r.id OPERATOR(pg_catalog.=) p.run;
COMMENT ON VIEW sft_progress IS
'runs in flight: phase (starting, loading, training, validating, checkpointing, saving), epoch of epochs, optimizer step of steps, last loss, learning rate, tokens/s, estimated time left and a sparkline of the recent logged losses';
GRANT SELECT ON sft_progress TO PUBLIC;

CREATE FUNCTION sft_model_create(name text, tokenizer text, config jsonb,
                                 seed bigint DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'sft_model_create'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_create(text, text, jsonb, bigint) IS
'a freshly initialised model (HF initialisation, seeded) from an HF-style config; vocab_size must cover the tokenizer; returns the parameter count';

CREATE FUNCTION sft_model_import(name text, directory text, base text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'sft_model_import'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_import(text, text, text) IS
'imports an HF model directory on the server (config.json, *.safetensors, sharded too, tokenizer files; the tokenizer is imported under the model''s name unless one of that name exists), or a PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) as an adapter of the model named by base (owner of the base only; shapes checked against it); superusers and pg_read_server_files only; returns the parameter count';

CREATE FUNCTION sft_model_export(name text, directory text, format text DEFAULT 'hf',
                                 dtype text DEFAULT NULL) RETURNS text[]
    AS 'MODULE_PATHNAME', 'sft_model_export'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_export(text, text, text, text) IS
'writes the model into a server directory (created if missing): format ''hf'' (default) model.safetensors (fp32), config.json and the tokenizer files (an adapter: adapter_config.json and adapter_model.safetensors, as PEFT); format ''gguf'' NAME.gguf for llama.cpp (dtype f16 by default, or f32, bf16, q8_0) and an Ollama Modelfile; owner or superuser, and superusers and pg_write_server_files only; returns the files written';

CREATE FUNCTION sft_model_set_system(name text, system_prompt text) RETURNS void
    AS 'MODULE_PATHNAME', 'sft_model_set_system'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_set_system(text, text) IS
'the system prompt sft_generate uses for this model when a conversation has none (before the tokenizer''s default_system); NULL removes it; only the model''s owner may set it';

CREATE FUNCTION sft_model_merge(adapter text, output text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'sft_model_merge'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_merge(text, text) IS
'a full model output computing what the LoRA adapter and its base compute (W += scale B A), with the base''s tokenizer and parent = the adapter; owner of both (or superuser); returns the parameter count';

CREATE FUNCTION sft_model_drop(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'sft_model_drop'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_drop(text) IS
'removes a model, its weights large object and the checkpoints of the run that produced it; refused for the base of adapters; owner or superuser';

CREATE FUNCTION sft_train(source text, base text, output text,
                          epochs integer DEFAULT 2,
                          learning_rate float8 DEFAULT 2e-5,
                          max_length integer DEFAULT 512,
                          batch_size integer DEFAULT 8,
                          options jsonb DEFAULT '{}') RETURNS bigint
    AS 'MODULE_PATHNAME', 'sft_train'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_train(text, text, text, integer, float8, integer, integer, jsonb) IS
'starts a background worker that fine-tunes base on the conversations of source (a table or view, read as the calling role) into a new model output; returns the run id at once (the worker starts when the calling transaction commits)';

CREATE FUNCTION sft_wait(run bigint, timeout interval DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'sft_wait'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_wait(bigint, interval) IS
'waits until the run ends (or timeout passes) and returns its status, with a NOTICE every 5 seconds showing epoch, step, loss and tokens/s';

CREATE FUNCTION sft_cancel(run bigint) RETURNS boolean
    AS 'MODULE_PATHNAME', 'sft_cancel'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_cancel(bigint) IS
'stops a run between two micro-batches and waits until it has stopped; it keeps its last epoch checkpoint for sft_resume; false when the run was not active';

CREATE FUNCTION sft_resume(run bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'sft_resume'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_resume(bigint) IS
'continues a cancelled, failed or interrupted run from its last epoch checkpoint (from the base model when no epoch finished); returns the run id';

CREATE FUNCTION sft_run_drop(run bigint) RETURNS boolean
    AS 'MODULE_PATHNAME', 'sft_run_drop'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_run_drop(bigint) IS
'removes a run that is not active, its log and epoch rows and its checkpoint large objects (the model it produced stays); owner or superuser';
-- ==== end section: models and training ====

-- ==== section: generation and evaluation ====
-- Talking to a model and measuring its loss.  Models are loaded into a
-- per-backend cache (sft.model_cache_size) and read as the calling role:
-- a model's weights need SELECT on their large object.
-- The text and jsonb forms of sft_generate share argument names; an uncast
-- string literal resolves to the text form, so write a conversation as
-- '[...]'::jsonb or messages => '[...]' (a JSON conversation passed as text
-- is refused with that hint rather than answered as a question).

CREATE FUNCTION sft_generate(model text, messages jsonb,
    max_new_tokens integer DEFAULT 256, temperature float8 DEFAULT 0,
    top_k integer DEFAULT 0, top_p float8 DEFAULT 1, seed bigint DEFAULT NULL,
    stop text[] DEFAULT NULL, template_kwargs jsonb DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'sft_generate'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_generate(text, jsonb, integer, float8, integer, float8, bigint, text[], jsonb) IS
'the model''s reply to a conversation ending with a user message: rendered with the tokenizer''s chat template and generation prompt, KV-cached decoding, greedy at temperature 0 (else temperature, top_k, top_p, seeded); ends at the end-of-turn or end-of-sequence token, before the first stop string, after max_new_tokens, or when the context is full; template_kwargs: extra chat-template variables such as {"enable_thinking": false}';

CREATE FUNCTION sft_generate(model text, prompt text,
    max_new_tokens integer DEFAULT 256, temperature float8 DEFAULT 0,
    top_k integer DEFAULT 0, top_p float8 DEFAULT 1, seed bigint DEFAULT NULL,
    stop text[] DEFAULT NULL, template_kwargs jsonb DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'sft_generate_text'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_generate(text, text, integer, float8, integer, float8, bigint, text[], jsonb) IS
'sft_generate with the prompt as a single user message (the template''s default system prompt applies)';

CREATE FUNCTION sft_generate_batch(model text, prompts jsonb[],
    max_new_tokens integer DEFAULT 256, temperature float8 DEFAULT 0,
    top_k integer DEFAULT 0, top_p float8 DEFAULT 1, seed bigint DEFAULT NULL,
    stop text[] DEFAULT NULL, template_kwargs jsonb DEFAULT NULL) RETURNS TABLE (ordinality integer, reply text)
    AS 'MODULE_PATHNAME', 'sft_generate_batch'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_generate_batch(text, jsonb[], integer, float8, integer, float8, bigint, text[], jsonb) IS
'sft_generate for many conversations in one call: one row (ordinality, reply) per element of prompts, each reply exactly what sft_generate gives for that conversation with seed + ordinality - 1; the sequences are decoded together (one read of the weights per step serves all) as far as sft.generate_batch_memory allows; template_kwargs apply to every prompt';

CREATE FUNCTION sft_generate_stream(model text, messages jsonb,
    max_new_tokens integer DEFAULT 256, temperature float8 DEFAULT 0,
    top_k integer DEFAULT 0, top_p float8 DEFAULT 1, seed bigint DEFAULT NULL,
    stop text[] DEFAULT NULL, template_kwargs jsonb DEFAULT NULL) RETURNS SETOF text
    AS 'MODULE_PATHNAME', 'sft_generate_stream'
    LANGUAGE C VOLATILE ROWS 64;
COMMENT ON FUNCTION sft_generate_stream(text, jsonb, integer, float8, integer, float8, bigint, text[], jsonb) IS
'sft_generate one piece at a time: a row per piece of valid UTF-8 as it is decoded; the rows concatenated are sft_generate''s text for the same arguments (call it in the select list with a cursor or FETCH_COUNT to see rows as they come)';

CREATE FUNCTION sft_generate_stream(model text, prompt text,
    max_new_tokens integer DEFAULT 256, temperature float8 DEFAULT 0,
    top_k integer DEFAULT 0, top_p float8 DEFAULT 1, seed bigint DEFAULT NULL,
    stop text[] DEFAULT NULL, template_kwargs jsonb DEFAULT NULL) RETURNS SETOF text
    AS 'MODULE_PATHNAME', 'sft_generate_stream_text'
    LANGUAGE C VOLATILE ROWS 64;
COMMENT ON FUNCTION sft_generate_stream(text, text, integer, float8, integer, float8, bigint, text[], jsonb) IS
'sft_generate_stream with the prompt as a single user message';

CREATE FUNCTION sft_generate_raw(model text, prompt text,
    max_new_tokens integer DEFAULT 256, temperature float8 DEFAULT 0,
    top_k integer DEFAULT 0, top_p float8 DEFAULT 1, seed bigint DEFAULT NULL,
    stop text[] DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'sft_generate_raw'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_generate_raw(text, text, integer, float8, integer, float8, bigint, text[]) IS
'plain continuation of prompt, without a chat template: the text is encoded as is (special-token text such as <s> is matched as the special token; nothing is added), generation ends as in sft_generate';

CREATE FUNCTION sft_generate_tokens(model text, input_ids integer[],
    max_new_tokens integer DEFAULT 256, temperature float8 DEFAULT 0,
    top_k integer DEFAULT 0, top_p float8 DEFAULT 1, seed bigint DEFAULT NULL)
    RETURNS integer[]
    AS 'MODULE_PATHNAME', 'sft_generate_tokens'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_generate_tokens(text, integer[], integer, float8, integer, float8, bigint) IS
'token-level generation: the ids sampled after input_ids, over the whole model vocabulary, ending with the end-of-turn or end-of-sequence id when one is sampled';

CREATE FUNCTION sft_loss(model text, messages jsonb, train_on text DEFAULT 'all_assistant',
    template_kwargs jsonb DEFAULT NULL)
    RETURNS float8
    AS 'MODULE_PATHNAME', 'sft_loss'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION sft_loss(text, jsonb, text, jsonb) IS
'mean negative log-likelihood (nats) of the conversation''s assistant tokens (the training loss mask: every reply and the token closing it, or the last reply with train_on => ''last_assistant''), computed as training computes it (template_kwargs: extra chat-template variables, as in training)';

CREATE FUNCTION sft_eval(model text, source text, max_length integer DEFAULT 512,
    messages_column text DEFAULT 'messages', train_on text DEFAULT 'all_assistant',
    too_long text DEFAULT 'drop', template_kwargs jsonb DEFAULT NULL)
    RETURNS TABLE (rows bigint, tokens bigint, loss float8, perplexity float8)
    AS 'MODULE_PATHNAME', 'sft_eval'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION sft_eval(text, text, integer, text, text, text, jsonb) IS
'the model''s loss over a table or view of conversations, read as the caller: rows scored, assistant tokens scored, token-weighted mean loss (total NLL / tokens, as training defines it) and its perplexity; rows are prepared as training prepares them (NULL rows and rows without assistant tokens skipped, rows over max_length dropped or, with too_long => ''truncate'', cut)';

CREATE FUNCTION sft_model_cache(OUT model text, OUT weights oid, OUT parameters bigint,
    OUT model_bytes bigint, OUT work_bytes bigint, OUT loaded_at timestamptz,
    OUT last_used timestamptz, OUT hits bigint, OUT in_use boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sft_model_cache'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_cache() IS
'the models this backend keeps loaded: parameter bytes, bytes of KV caches and evaluators kept or in use, when loaded and last used, hits (calls served without loading); bounded by sft.model_cache_size';

CREATE FUNCTION sft_model_cache_clear() RETURNS integer
    AS 'MODULE_PATHNAME', 'sft_model_cache_clear'
    LANGUAGE C VOLATILE;
COMMENT ON FUNCTION sft_model_cache_clear() IS
'frees every model this backend keeps loaded (except those a running call uses); returns how many';
-- ==== end section: generation and evaluation ====

-- ==== section: charts and demo ====
-- Seeing training: a sparkline for psql and an SVG chart for a browser.

CREATE FUNCTION sft_loss_chart(step float8[], loss float8[], epoch_step float8[] DEFAULT NULL,
                               validation_loss float8[] DEFAULT NULL, title text DEFAULT NULL)
    RETURNS text
    AS 'MODULE_PATHNAME', 'sft_loss_chart_arrays'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION sft_loss_chart(float8[], float8[], float8[], float8[], text) IS
'an SVG document (no scripts) of train loss per step, epoch ends, and validation loss per epoch (placed at the step where each epoch ended)';

-- The chart of a run: its log rows (train loss every log_every steps) and
-- epoch rows (validation loss at the step each epoch ended).  Works while the
-- run is going: it shows what has been logged so far.
CREATE FUNCTION sft_loss_chart(run bigint) RETURNS text
    LANGUAGE plpgsql STABLE STRICT
    SET search_path = pg_catalog, @extschema@, pg_temp
    AS $$
DECLARE
    r record;
BEGIN
    SELECT id, source, output INTO r FROM sft_run_table WHERE id = sft_loss_chart.run;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', sft_loss_chart.run
            USING ERRCODE = 'undefined_object', HINT = 'See SELECT id, output, status FROM sft_runs.';
    END IF;
    RETURN sft_loss_chart(
        ARRAY(SELECT l.step::float8 FROM sft_run_log l WHERE l.run_id = r.id ORDER BY l.step),
        ARRAY(SELECT l.loss FROM sft_run_log l WHERE l.run_id = r.id ORDER BY l.step),
        ARRAY(SELECT e.step::float8 FROM sft_run_epochs e WHERE e.run_id = r.id ORDER BY e.epoch),
        ARRAY(SELECT e.validation_loss FROM sft_run_epochs e WHERE e.run_id = r.id ORDER BY e.epoch),
        format('run %s: %s → %s', r.id, r.source, r.output));
END
$$;
COMMENT ON FUNCTION sft_loss_chart(bigint) IS
'an SVG document of a run''s train loss per logged step and validation loss per epoch (from sft_run_log and sft_run_epochs); save it as a .svg file and open it in a browser';
-- ==== end section: charts and demo ====
