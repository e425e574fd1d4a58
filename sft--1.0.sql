-- sft: supervised fine-tuning of small chat language models inside PostgreSQL.
-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION sft" to load this file. \quit

-- ==== section: conversations ====
-- ==== end section: conversations ====

-- ==== section: tokenizers ====
-- ==== end section: tokenizers ====

-- ==== section: templates ====
-- ==== end section: templates ====

-- ==== section: models and training ====
-- ==== end section: models and training ====

-- ==== section: generation and evaluation ====
-- ==== end section: generation and evaluation ====
