-- Privileges and row-level security: the worker reads the source as the
-- calling role, sees exactly the rows the role sees, and runs belong to their
-- role.
SET client_min_messages = warning;
SET sft.threads = 1;
\set tokjson `cat test/fixtures/tiny_bpe.json`
\set tokcfg `cat test/fixtures/tiny_config_chatml.json`
\set cfg '{"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512}'
CREATE TEMP TABLE tsec_lo_before AS SELECT count(*) AS n FROM pg_largeobject_metadata;
SELECT tokenizer FROM sft_tokenizer_load('tsec_tok', :'tokjson', :'tokcfg');
CREATE ROLE regress_sft_alice LOGIN;
CREATE ROLE regress_sft_bob LOGIN;
CREATE ROLE regress_sft_team NOLOGIN;

CREATE TABLE tsec_private (owner name, messages jsonb);
INSERT INTO tsec_private SELECT 'regress_sft_alice', sft_from_pair('Hi', 'Hello!') FROM generate_series(1, 6);
INSERT INTO tsec_private SELECT 'regress_sft_bob', sft_from_pair('Hi', 'Go away.') FROM generate_series(1, 10);
INSERT INTO tsec_private SELECT 'regress_sft_team', sft_from_pair('Hi', 'Welcome.') FROM generate_series(1, 3);
ALTER TABLE tsec_private ENABLE ROW LEVEL SECURITY;
CREATE POLICY tsec_own_rows ON tsec_private USING (owner = current_user);
GRANT SELECT ON tsec_private TO regress_sft_alice, regress_sft_bob, regress_sft_team;
CREATE TABLE tsec_secret (messages jsonb);
INSERT INTO tsec_secret SELECT sft_from_pair('Hi', 'secret') FROM generate_series(1, 4);
CREATE TABLE tsec_revoked (messages jsonb);
INSERT INTO tsec_revoked SELECT sft_from_pair('Hi', 'soon gone') FROM generate_series(1, 4);
GRANT SELECT ON tsec_revoked TO regress_sft_alice;

-- alice trains from her own model on the rows she may see
SET ROLE regress_sft_alice;
SELECT sft_model_create('tsec_alice_base', 'tsec_tok', :'cfg', 1);
SELECT count(*) AS rows_alice_sees FROM tsec_private;
SELECT sft_train('tsec_private', 'tsec_alice_base', 'tsec_alice_model', epochs => 1, max_length => 64) AS run \gset
SELECT sft_wait(:run);
SELECT status, owner, rows_read, rows_used FROM sft_runs WHERE id = :run;
SELECT owner FROM sft_models WHERE name = 'tsec_alice_model';
SELECT l.lomowner::regrole AS weights_owner
  FROM sft_models m JOIN pg_largeobject_metadata l ON l.oid = m.weights WHERE m.name = 'tsec_alice_model';
-- no SELECT on the source: refused before anything starts
SELECT sft_train('tsec_secret', 'tsec_alice_base', 'tsec_alice_secret', epochs => 1, max_length => 64);
RESET ROLE;

-- the worker checks privileges itself: revoked after sft_train, before the run began
BEGIN;
SET LOCAL ROLE regress_sft_alice;
SELECT sft_train('tsec_revoked', 'tsec_alice_base', 'tsec_alice_revoked', epochs => 1, max_length => 64) AS run \gset
RESET ROLE;
REVOKE SELECT ON tsec_revoked FROM regress_sft_alice;
COMMIT;
SELECT sft_wait(:run);
SELECT status, error FROM sft_runs WHERE id = :run;

-- a superuser bypasses row-level security, in the worker as in the session
SELECT sft_model_create('tsec_su_base', 'tsec_tok', :'cfg', 1);
SELECT count(*) AS rows_superuser_sees FROM tsec_private;
SELECT sft_train('tsec_private', 'tsec_su_base', 'tsec_su_model', epochs => 1, max_length => 64) AS run \gset
SELECT sft_wait(:run);
SELECT status, rows_read FROM sft_runs WHERE id = :run;

-- a role that cannot log in (SET ROLE to a group) trains as itself
SET ROLE regress_sft_team;
SELECT sft_model_create('tsec_team_base', 'tsec_tok', :'cfg', 1);
SELECT count(*) AS rows_team_sees FROM tsec_private;
SELECT sft_train('tsec_private', 'tsec_team_base', 'tsec_team_model', epochs => 1, max_length => 64) AS run \gset
SELECT sft_wait(:run);
SELECT status, owner, rows_read FROM sft_runs WHERE id = :run;
SELECT owner FROM sft_models WHERE name = 'tsec_team_model';
RESET ROLE;

-- bob may neither train from, drop or export alice's model, nor control her runs
SELECT max(id) AS alice_run FROM sft_run_table WHERE output = 'tsec_alice_revoked' \gset
SET ROLE regress_sft_bob;
SELECT sft_train('tsec_private', 'tsec_alice_base', 'tsec_bob_model', epochs => 1, max_length => 64);
SELECT sft_model_drop('tsec_alice_model');
SELECT sft_model_export('tsec_alice_model', '/tmp/never');
DO $$ BEGIN
  PERFORM sft_cancel(max(id)) FROM sft_run_table WHERE output = 'tsec_alice_revoked';
EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
DO $$ BEGIN
  PERFORM sft_resume(max(id)) FROM sft_run_table WHERE output = 'tsec_alice_revoked';
EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
DO $$ BEGIN
  PERFORM sft_run_drop(max(id)) FROM sft_run_table WHERE output = 'tsec_alice_revoked';
EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
-- ... nor write the catalog directly
UPDATE sft_run_table SET status = 'succeeded' WHERE output = 'tsec_alice_revoked';
DELETE FROM sft_run_log;
INSERT INTO sft_run_epochs VALUES (1, 1, 1, 0.0);
RESET ROLE;
-- alice may (her run failed: she resumes it once she has the privilege again)
GRANT SELECT ON tsec_revoked TO regress_sft_alice;
SET ROLE regress_sft_alice;
SELECT sft_resume(:alice_run) = :alice_run AS resumed;
SELECT sft_wait(:alice_run);
RESET ROLE;

-- clean up as the owners; nothing is left behind
SET ROLE regress_sft_alice;
SELECT sft_model_drop(name) FROM sft_models WHERE owner = 'regress_sft_alice'::regrole ORDER BY name;
SELECT bool_and(sft_run_drop(id)) FROM sft_run_table WHERE owner = 'regress_sft_alice'::regrole;
SET ROLE regress_sft_team;
SELECT sft_model_drop(name) FROM sft_models WHERE owner = 'regress_sft_team'::regrole ORDER BY name;
SELECT bool_and(sft_run_drop(id)) FROM sft_run_table WHERE owner = 'regress_sft_team'::regrole;
RESET ROLE;
SELECT sft_model_drop(name) FROM sft_models WHERE name LIKE 'tsec\_su\_%' ORDER BY name;
SELECT bool_and(sft_run_drop(id)) FROM sft_run_table WHERE output LIKE 'tsec\_%';
SELECT (SELECT count(*) FROM pg_largeobject_metadata) - n AS orphaned_large_objects FROM tsec_lo_before;
SELECT sft_tokenizer_drop('tsec_tok');
DROP TABLE tsec_private, tsec_secret, tsec_revoked;
DROP ROLE regress_sft_alice;
DROP ROLE regress_sft_bob;
DROP ROLE regress_sft_team;
