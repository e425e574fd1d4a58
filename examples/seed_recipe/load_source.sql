-- Loads :data_dir/:source.jsonl into seed_docs, one row per line, numbered
-- in file order (included by seed_recipe.sql once per source).
TRUNCATE seed_stage RESTART IDENTITY;
\set path :data_dir '/' :source '.jsonl'
\set copy '\\copy seed_stage (doc) FROM ' :'path' :copy_options
:copy
INSERT INTO seed_docs (source, line, doc) SELECT :'source', line, doc FROM seed_stage;
