#!/bin/bash
# security_hijack.sh: a plain role cannot make the extension run its objects
# with another role's rights (issue 11, the CVE-2018-1058 class of bug).
#
# A superuser installs the extension, a tokenizer and a victim role's model
# and run.  The plain LOGIN role mallory owns a schema evil; first the three
# reproductions of issue 11 verbatim (sft_cancel, sft_wait, sft_run_drop with
# an existing run id), then mallory plants there (security_hijack.sql)
# operators for every type the catalog queries compare, functions and
# aggregates with the names and signatures of pg_catalog ones, and domains
# named like the built-in types, each of which reports the role it runs as.
# Then, with evil first in search_path (SET in the session, and separately
# as mallory's role default, which the training worker also gets), mallory
# calls every SQL function and view of the extension, on her own objects and
# other roles', before, during and after a training run.  Each call is its
# own psql session (errors are expected and only recorded); after each one:
# mallory's role attributes and memberships are unchanged, and no planted
# object ran as anyone but mallory (evil.log, the non-transactional
# evil.foreign_hits counter, and the "sft-hijack" WARNINGs in the server log,
# which survive a rolled-back call).  A function of the extension (from
# pg_proc/pg_depend) that no call here covers fails the suite.
#
# Starts its own throwaway cluster with test/cluster.sh.  Ends with
# "N passed, N failed".  The output of every call goes to
# ${SFT_HIJACK_LOG:-/tmp/sft-security-hijack.log}.
set -u
cd "$(dirname "$0")/../.."
PG_CONFIG=${PG_CONFIG:-pg_config}

passed=0
failed=0
ok() {						# ok DESCRIPTION COMMAND...: passes when COMMAND succeeds
	local desc=$1
	shift
	if "$@"; then
		echo "ok - $desc"
		passed=$((passed + 1))
	else
		echo "not ok - $desc"
		failed=$((failed + 1))
		return 1
	fi
}
equals() { [ "$1" = "$2" ] || { echo "# got '$1', expected '$2'"; return 1; }; }
escalated=()					# "mode/phase: call: what ran" of every escalation
finish() {
	if [ ${#escalated[@]} -gt 0 ]; then
		echo "# ${#escalated[@]} calls ran planted objects with another role's rights:"
		printf '#   %s\n' "${escalated[@]}"
	fi
	echo "# output of every call: $CALLLOG"
	echo "$passed passed, $failed failed"
	exit 0
}

CALLLOG=${SFT_HIJACK_LOG:-/tmp/sft-security-hijack.log}
: >"$CALLLOG"

# Our own cluster; the suite driver's variables stay untouched outside.
unset PGHOST PGPORT SFT_TMP SFT_PGDATA
source test/cluster.sh
if ! cluster_start "sft.max_concurrent_runs = 4" >/tmp/sft-hijack-suite-start.log 2>&1; then
	cat /tmp/sft-hijack-suite-start.log
	echo "not ok - could not start a cluster"
	failed=1
	finish
fi
export PGOPTIONS="-c client_min_messages=warning -c sft.threads=1"
# the superuser's view of things, with nothing of evil in its search_path
PSQL="psql -X -q -At -v ON_ERROR_STOP=1"
sql() { $PSQL -c "$1" 2>&1; }
as_mallory_safe() { PGOPTIONS="$PGOPTIONS -c search_path=pg_catalog,public" $PSQL -U mallory "$@" 2>&1; }

# wait_until SQL [tries]: polls (every 0.1 s) until SQL returns t
wait_until() {
	local i
	for i in $(seq 1 "${2:-600}"); do
		[ "$($PSQL -c "$1" 2>/dev/null)" = t ] && return 0
		sleep 0.1
	done
	return 1
}
run_status() { sql "SELECT status FROM sft_run_table WHERE id = $1"; }
wait_run_ended() { wait_until "SELECT status NOT IN ('queued', 'running') FROM sft_run_table WHERE id = $1" "${2:-600}"; }

CFG='{"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512}'
SHORT="epochs => 1, learning_rate => 0.01, max_length => 64, batch_size => 4"

# ---------------------------------------------------------------------------
# Set-up: extension, tokenizer, roles; the victim's model, data and run;
# mallory's schema, data, model and two finished runs
# ---------------------------------------------------------------------------
$PSQL -v tokjson="$(cat test/fixtures/tiny_bpe.json)" -v tokcfg="$(cat test/fixtures/tiny_config_chatml.json)" \
	-v cfg="$CFG" <<SQL >"$SFT_TMP/setup.log" 2>&1
CREATE EXTENSION sft;
SELECT sft_tokenizer_load('tok', :'tokjson', :'tokcfg');
CREATE ROLE victim LOGIN;
CREATE ROLE mallory LOGIN;
-- what the reproduction of the issue does first: CREATE SCHEMA evil
GRANT CREATE ON DATABASE postgres TO mallory;
CREATE SCHEMA vict AUTHORIZATION victim;
SET ROLE victim;
CREATE TABLE vict.data AS
  SELECT n, sft_from_pair('Question ' || n, 'Answer ' || n) AS messages FROM generate_series(1, 32) n;
CREATE TABLE vict.oasst (message_id text, parent_id text, message_tree_id text, role text, text text,
                         rank int, deleted boolean, review_result boolean);
INSERT INTO vict.oasst VALUES ('r', NULL, 't', 'prompter', 'Q', NULL, false, true),
                              ('a', 'r', 't', 'assistant', 'A', 0, false, true);
SELECT sft_model_create('vbase', 'tok', :'cfg', 2);
SELECT sft_train('vict.data', 'vbase', 'vout', $SHORT);
RESET ROLE;
SQL
if grep -q ERROR "$SFT_TMP/setup.log"; then
	cat "$SFT_TMP/setup.log"
	echo "not ok - set-up: extension, tokenizer, roles, victim's model and run"
	failed=$((failed + 1))
	finish
fi
VRUN=$(sql "SELECT id FROM sft_run_table WHERE output = 'vout'")
as_mallory_safe -v cfg="$CFG" <<SQL >"$SFT_TMP/setup-mallory.log"
CREATE SCHEMA evil;
CREATE TABLE evil.data AS
  SELECT n, sft_from_pair('Question ' || n, 'Answer ' || n) AS messages FROM generate_series(1, 256) n;
CREATE TABLE evil.oasst AS SELECT * FROM (VALUES ('r', NULL, 't', 'prompter', 'Q', NULL::int, false, true),
  ('a', 'r', 't', 'assistant', 'A', 0, false, true)) v(message_id, parent_id, message_tree_id, role, text, rank, deleted, review_result);
SELECT sft_model_create('mbase', 'tok', :'cfg', 3);
SELECT sft_train('evil.data', 'mbase', 'mout0', $SHORT);
SELECT sft_train('evil.data', 'mbase', 'mout_drop', $SHORT);
SQL
MRUN0=$(sql "SELECT id FROM sft_run_table WHERE output = 'mout0'")
MRUN_DROP=$(sql "SELECT id FROM sft_run_table WHERE output = 'mout_drop'")
for r in $VRUN $MRUN0 $MRUN_DROP; do wait_run_ended "$r"; done
ok "set-up: victim's and mallory's runs succeeded" equals \
	"$(sql "SELECT string_agg(status, ',' ORDER BY id) FROM sft_run_table")" "succeeded,succeeded,succeeded" ||
	cat "$SFT_TMP/setup-mallory.log"

# mallory's attributes and memberships, what planted objects ran as others,
# and the sft-hijack WARNINGs in the server log: all must stay as they are
STATE_SQL="SELECT concat_ws(' | ',
  (SELECT format('super=%s createrole=%s createdb=%s bypassrls=%s replication=%s',
                 rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication)
     FROM pg_authid WHERE rolname = 'mallory'),
  'member of: ' || (SELECT coalesce(string_agg(roleid::regrole::text, ',' ORDER BY roleid::regrole::text), '')
                      FROM pg_auth_members WHERE member = 'mallory'::regrole),
  'foreign log rows: ' || CASE WHEN to_regclass('evil.log') IS NULL THEN '0'
       ELSE (xpath('//n/text()', query_to_xml('SELECT count(*) AS n FROM evil.log WHERE cur <> ''mallory''', false, false, '')))[1]::text END,
  'foreign hits: ' || CASE WHEN to_regclass('evil.foreign_hits') IS NULL THEN '0'
       ELSE (xpath('//n/text()', query_to_xml('SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM evil.foreign_hits', false, false, '')))[1]::text END)"
state() { echo "$(sql "$STATE_SQL") | hijack warnings: $(grep -c 'sft-hijack' "$SFT_TMP/server.log")"; }
# undo an escalation so that the next call is judged on its own
repair() {
	sql "ALTER ROLE mallory NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS NOREPLICATION" >/dev/null
	echo "SELECT format('REVOKE %I FROM mallory', roleid::regrole) FROM pg_auth_members WHERE member = 'mallory'::regrole \\gexec" |
		$PSQL >/dev/null 2>&1
}
BASELINE=$(state)
log_offset=$(stat -c %s "$SFT_TMP/server.log")

# check DESCRIPTION: after a call, nothing has changed since the baseline
check() {
	local now
	now=$(state)
	if [ "$now" = "$BASELINE" ]; then
		echo "ok - no escalation: $1"
		passed=$((passed + 1))
	else
		local what
		what=$(tail -c +"$((log_offset + 1))" "$SFT_TMP/server.log" | grep -o 'sft-hijack: .*' |
			sed 's/^sft-hijack: //' | sort | uniq -c | sort -rn | awk '{$1 = $1 "x"; print}' | head -8 | paste -sd ';' -)
		echo "not ok - no escalation: $1"
		echo "#   before: $BASELINE"
		echo "#   after:  $now"
		[ -n "$what" ] && echo "#   ran: $what"
		failed=$((failed + 1))
		escalated+=("$1: ${what:-(no WARNING: $now)}")
		repair
		BASELINE=$(state)
	fi
	log_offset=$(stat -c %s "$SFT_TMP/server.log")
}

# ---------------------------------------------------------------------------
# The three reproductions of issue 11, verbatim, on mallory's own existing
# runs (so that the call itself succeeds and nothing rolls the ALTER ROLE back)
# ---------------------------------------------------------------------------
repro() {					# repro NAME CALL
	as_mallory_safe -c "DROP SCHEMA IF EXISTS evil CASCADE" >/dev/null
	PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -U mallory >>"$CALLLOG" 2>&1 <<SQL
-- as a plain role \`mallory\`
CREATE SCHEMA evil;
CREATE FUNCTION evil.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; RETURN \$1 OPERATOR(pg_catalog.=) \$2; END \$\$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq);
SET search_path = evil, pg_catalog, public;
$2
-- mallory is now a superuser
SQL
	ok "reproduction of issue 11 fails: $1 does not make mallory a superuser" \
		equals "$(sql "SELECT rolsuper FROM pg_authid WHERE rolname = 'mallory'")" f
	repair
}
# the reproduction creates schema evil itself: mallory's data waits elsewhere meanwhile
as_mallory_safe -c "CREATE SCHEMA mine" -c "ALTER TABLE evil.data SET SCHEMA mine" >/dev/null
repro sft_cancel "SELECT sft_cancel($MRUN0);   -- any existing run id"
repro sft_wait "SELECT sft_wait($MRUN0);   -- any existing run id"
repro sft_run_drop "SELECT sft_run_drop($MRUN_DROP);   -- any existing run id"
as_mallory_safe -c "DROP SCHEMA IF EXISTS evil CASCADE" -c "ALTER SCHEMA mine RENAME TO evil" >/dev/null
# from here on, CREATE on its own schema is all mallory has
sql "REVOKE CREATE ON DATABASE postgres FROM mallory" >/dev/null
BASELINE=$(state)
log_offset=$(stat -c %s "$SFT_TMP/server.log")

# ---------------------------------------------------------------------------
# Plant the hostile objects
# ---------------------------------------------------------------------------
as_mallory_safe -v ON_ERROR_STOP=1 -f test/suites/security_hijack.sql >"$SFT_TMP/plant.log"
ok "hostile objects planted" equals "$?" 0 || cat "$SFT_TMP/plant.log"
ok "planted: operators for bigint, integer, text, oid, name, regrole, jsonb, timestamptz, boolean" equals \
	"$(sql "SELECT count(DISTINCT oprleft::regtype) FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace AND oprname = '='
	          AND oprleft = oprright AND oprleft::regtype::text IN ('bigint', 'integer', 'text', 'oid', 'name', 'regrole',
	                                                              'jsonb', 'timestamp with time zone', 'boolean')")" 9
ok "planted: functions shadowing pg_catalog (lower, now, format, jsonb_build_object, nullif's =, ...)" equals \
	"$(sql "SELECT count(DISTINCT proname) >= 100 FROM pg_proc WHERE pronamespace = 'evil'::regnamespace
	          AND proname IN (SELECT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace)")" t
echo "# planted in evil: $(sql "SELECT count(*) FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace") operators," \
	"$(sql "SELECT count(*) FROM pg_proc WHERE pronamespace = 'evil'::regnamespace AND prokind = 'f'") functions," \
	"$(sql "SELECT count(*) FROM pg_proc WHERE pronamespace = 'evil'::regnamespace AND prokind = 'a'") aggregates," \
	"$(sql "SELECT count(*) FROM pg_type WHERE typnamespace = 'evil'::regnamespace AND typtype = 'd'") domains"
echo "# not plantable by a plain role: $(sql "SELECT string_agg(DISTINCT what || ' (' || error || ')', '; ') FROM evil.planted WHERE NOT ok AND what LIKE 'cast%'")"
BASELINE=$(state)
log_offset=$(stat -c %s "$SFT_TMP/server.log")
ok "baseline: mallory is a plain role with no memberships" \
	grep -q "^super=f createrole=f createdb=f bypassrls=f replication=f | member of:  | foreign log rows: 0 | foreign hits: 0 | hijack warnings: 0$" <<<"$BASELINE" ||
	echo "# $BASELINE"

# ---------------------------------------------------------------------------
# The calls
# ---------------------------------------------------------------------------
declare -A covered=()
calls=0
call_errors=0
MODE=session
PHASE=before

# call SIGNATURE SQL: one call as mallory with evil first in search_path,
# then the check.  SIGNATURE is the function's name(argument types), as the
# coverage check at the end lists them, or "view NAME".
call() {
	local sig=$1 q=$2 out
	covered[$sig]=1
	calls=$((calls + 1))
	if [ "$MODE" = session ]; then
		out=$(timeout 60 psql -X -q -At -U mallory -c "SET search_path = evil, pg_catalog, public" -c "$q" 2>&1)
	else
		out=$(timeout 60 psql -X -q -At -U mallory -c "$q" 2>&1)
	fi
	grep -q 'ERROR' <<<"$out" && call_errors=$((call_errors + 1))
	{ echo "== [$MODE/$PHASE] $q"; echo "$out" | head -c 2000; echo; } >>"$CALLLOG"
	check "$MODE/$PHASE: $q"
}

CONV="'[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Question 1\"}, {\"role\": \"assistant\", \"content\": \"Answer 1\"}]'::jsonb"
ASK="'[{\"role\": \"user\", \"content\": \"Question 1\"}]'::jsonb"
TOKSRC="(SELECT source FROM sft_tokenizers WHERE name = 'tok'), (SELECT config::text FROM sft_tokenizers WHERE name = 'tok')"

# what mallory may call at any time, on her own objects and other roles'
calls_anytime() {
	local tag=${MODE}_$PHASE
	call "sft_messages(jsonb)" "SELECT sft_messages($CONV)"
	call "sft_is_conversation(jsonb)" "SELECT sft_is_conversation($CONV)"
	call "sft_merge_system(jsonb, text)" "SELECT sft_merge_system($CONV)"
	call "sft_turns(jsonb)" "SELECT sft_turns($CONV)"
	call "sft_truncate_turns(jsonb, integer)" "SELECT sft_truncate_turns($CONV, 1)"
	call "sft_from_sharegpt(jsonb)" "SELECT sft_from_sharegpt('[{\"from\": \"human\", \"value\": \"hi\"}, {\"from\": \"gpt\", \"value\": \"yo\"}]')"
	call "sft_from_pair(text, text, text)" "SELECT sft_from_pair('hi', 'yo', 'sys')"
	# message trees: her own table, and the victim's (permission denied: read as the caller)
	call "sft_from_oasst(regclass, text, text, text, text, text, text, text, text, text)" \
		"SELECT count(*) FROM sft_from_oasst('evil.oasst', 'top1')"
	call "sft_from_oasst(regclass, text, text, text, text, text, text, text, text, text)" \
		"SELECT count(*) FROM sft_from_oasst('vict.oasst')"
	call "sft_from_oasst_tree(jsonb, text)" \
		"SELECT sft_from_oasst_tree('{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"replies\": [{\"role\": \"assistant\", \"text\": \"A\"}]}}', 'top1')"
	call "sft_from_turns(jsonb, text, text)" "SELECT sft_from_turns('[\"hi\", \"yo\"]'::jsonb, 'user', 'sys')"
	call "sft_from_turns(text[], text, text)" "SELECT sft_from_turns(ARRAY['hi', 'yo'])"
	call "sft_fill(jsonb, jsonb)" "SELECT sft_fill($CONV, '{\"Question\": \"Q\"}')"
	call "sft_placeholders(jsonb)" "SELECT sft_placeholders($CONV)"
	call "sft_add_system(jsonb, text)" "SELECT sft_add_system($ASK, 'You are evil.')"
	call "sft_from_prompt_completion(jsonb, jsonb)" "SELECT sft_from_prompt_completion('\"hi\"', '\"yo\"')"
	call "sft_from_alpaca(text, text, text, text, jsonb, text)" "SELECT sft_from_alpaca('hi', 'there', 'yo')"
	# tokenizers: the superuser's, and one of mallory's own
	call "sft_tokenizer_load(text, text, text)" "SELECT * FROM sft_tokenizer_load('mtok_$tag', $TOKSRC)"
	call "sft_tokenizer_import(text, text)" "SELECT * FROM sft_tokenizer_import('mimp_$tag', '/tmp')"
	call "sft_tokenizer_set_template(text, text, text)" "SELECT sft_tokenizer_set_template('mtok_$tag', 'llama3', 'Be nice.')"
	call "sft_tokenizer_set_template(text, text, text)" "SELECT sft_tokenizer_set_template('tok', 'llama2')"
	for t in tok mtok_$tag; do
		call "sft_tokenize(text, text, boolean)" "SELECT sft_tokenize('$t', 'Hello <|im_end|> world', true)"
		call "sft_detokenize(text, integer[], boolean)" "SELECT sft_detokenize('$t', sft_tokenize('$t', 'Hello world'), true)"
		call "sft_token_count(text, text)" "SELECT sft_token_count('$t', 'Hello world')"
		call "sft_token_count(text, jsonb, jsonb)" "SELECT sft_token_count('$t', $CONV, '{\"k\": 1}')"
		call "sft_render(text, jsonb, boolean, jsonb)" "SELECT sft_render('$t', $CONV, true, '{\"k\": 1}')"
		call "sft_encode(text, jsonb, integer, text, jsonb)" "SELECT * FROM sft_encode('$t', $CONV, 16, 'last_assistant', '{\"k\": 1}')"
		call "sft_chat_template_jinja(text)" "SELECT sft_chat_template_jinja('$t')"
	done
	call "sft_tokenizer_drop(text)" "SELECT sft_tokenizer_drop('mtok_$tag')"
	call "sft_tokenizer_drop(text)" "SELECT sft_tokenizer_drop('tok')"
	# models: mallory's own, the victim's, a new one created and dropped
	call "sft_model_create(text, text, jsonb, bigint)" "SELECT sft_model_create('m_$tag', 'tok', '$CFG', 5)"
	call "sft_model_export(text, text, text, text)" "SELECT sft_model_export('m_$tag', '$SFT_TMP/export')"
	call "sft_model_export(text, text, text, text)" "SELECT sft_model_export('vbase', '$SFT_TMP/export')"
	call "sft_model_export(text, text, text, text)" "SELECT sft_model_export('m_$tag', '$SFT_TMP/export_gguf', 'gguf', 'q8_0')"
	call "sft_model_import(text, text, text)" "SELECT sft_model_import('mimp_$tag', '$SFT_TMP/export')"
	call "sft_model_import(text, text, text)" "SELECT sft_model_import('madp_$tag', '$SFT_TMP/export', base => 'vbase')"
	call "sft_model_merge(text, text)" "SELECT sft_model_merge('vout', 'mmerge_$tag')"
	call "sft_model_merge(text, text)" "SELECT sft_model_merge('m_$tag', 'mmerge_$tag')"
	call "sft_model_set_system(text, text)" "SELECT sft_model_set_system('m_$tag', 'You are evil.')"
	call "sft_model_set_system(text, text)" "SELECT sft_model_set_system('vbase', 'You are evil.')"
	call "sft_model_drop(text)" "SELECT sft_model_drop('m_$tag')"
	call "sft_model_drop(text)" "SELECT sft_model_drop('vout')"
	call "sft_model_drop(text)" "SELECT sft_model_drop('no_such_model')"
	for m in mbase vbase vout; do
		call "sft_generate(text, jsonb, integer, double precision, integer, double precision, bigint, text[], jsonb)" \
			"SELECT sft_generate('$m', $ASK, max_new_tokens => 4, temperature => 0.8, top_k => 5, top_p => 0.9, seed => 1, stop => '{x}', template_kwargs => '{\"unused\": 1}')"
		call "sft_generate(text, text, integer, double precision, integer, double precision, bigint, text[], jsonb)" \
			"SELECT sft_generate('$m', 'Question 1', max_new_tokens => 4)"
		call "sft_generate_stream(text, jsonb, integer, double precision, integer, double precision, bigint, text[], jsonb)" \
			"SELECT * FROM sft_generate_stream('$m', $ASK, max_new_tokens => 4)"
		call "sft_generate_stream(text, text, integer, double precision, integer, double precision, bigint, text[], jsonb)" \
			"SELECT * FROM sft_generate_stream('$m', 'Question 1', max_new_tokens => 4)"
		call "sft_generate_batch(text, jsonb[], integer, double precision, integer, double precision, bigint, text[], jsonb)" \
			"SELECT * FROM sft_generate_batch('$m', ARRAY[$ASK::jsonb, $ASK::jsonb], max_new_tokens => 4, temperature => 0.8, seed => 1, stop => '{x}')"
		call "sft_generate_raw(text, text, integer, double precision, integer, double precision, bigint, text[])" \
			"SELECT sft_generate_raw('$m', 'Question', max_new_tokens => 4)"
		call "sft_generate_tokens(text, integer[], integer, double precision, integer, double precision, bigint)" \
			"SELECT sft_generate_tokens('$m', '{72, 101}', max_new_tokens => 4)"
		call "sft_loss(text, jsonb, text, jsonb)" "SELECT sft_loss('$m', $CONV, 'last_assistant', '{\"unused\": 1}')"
		call "sft_eval(text, text, integer, text, text, text, jsonb)" \
			"SELECT * FROM sft_eval('$m', 'evil.data', 64, 'messages', 'all_assistant', 'truncate')"
	done
	call "sft_eval(text, text, integer, text, text, text, jsonb)" "SELECT * FROM sft_eval('mbase', 'vict.data')"
	call "sft_model_cache()" "SELECT sft_loss('mbase', $CONV), (SELECT count(*) FROM sft_model_cache())"
	call "sft_model_cache_clear()" "SELECT sft_loss('mbase', $CONV), sft_model_cache_clear()"
	# runs: the victim's, mallory's finished one, one that does not exist
	for r in $VRUN $MRUN0 999999; do
		call "sft_run_active(bigint)" "SELECT sft_run_active($r)"
		call "sft_wait(bigint, interval)" "SELECT sft_wait($r, '100 ms')"
		call "sft_cancel(bigint)" "SELECT sft_cancel($r)"
		call "sft_resume(bigint)" "SELECT sft_resume($r)"
		call "sft_loss_chart(bigint)" "SELECT sft_loss_chart($r)"
	done
	call "sft_run_drop(bigint)" "SELECT sft_run_drop($VRUN)"
	call "sft_run_drop(bigint)" "SELECT sft_run_drop(999999)"
	call "sft_train(text, text, text, integer, double precision, integer, integer, jsonb)" \
		"SELECT sft_train('evil.data', 'vbase', 'msteal_$tag', $SHORT)"
	call "sft_train(text, text, text, integer, double precision, integer, integer, jsonb)" \
		"SELECT sft_train('vict.data', 'mbase', 'msteal2_$tag', $SHORT)"
	call "sft_progress_rows()" "SELECT * FROM sft_progress_rows()"
	call "sft_sparkline(double precision[])" "SELECT sft_sparkline('{1, 2, 3, NaN, NULL}')"
	call "sft_loss_chart(double precision[], double precision[], double precision[], double precision[], text)" \
		"SELECT sft_loss_chart('{1, 2, 3}', '{3, 2, 1}', '{3}', '{1.5}', 'chart')"
	call "view sft_runs" "SELECT * FROM sft_runs"
	call "view sft_runs" "SELECT * FROM sft_runs WHERE id = $VRUN AND status = 'succeeded'"
	call "view sft_progress" "SELECT * FROM sft_progress"
}

# one whole round: before, during and after a training run of mallory's
round() {
	local tag mrun short
	PHASE=before
	calls_anytime
	# a long run from mallory's own model, cancelled later
	tag=${MODE}
	call "sft_train(text, text, text, integer, double precision, integer, integer, jsonb)" \
		"SELECT sft_train('evil.data', 'mbase', 'mlong_$tag', epochs => 1000, learning_rate => 0.01, max_length => 64, batch_size => 4, options => '{\"log_every\": 5, \"validation_fraction\": 0.1}')"
	mrun=$(sql "SELECT id FROM sft_run_table WHERE output = 'mlong_$tag'")
	PHASE=during
	if ! ok "$MODE: mallory's long run is training" \
		wait_until "SELECT EXISTS (SELECT FROM sft_run_epochs WHERE run_id = '$mrun') AND status = 'running' FROM sft_run_table WHERE id = '$mrun'" 600; then
		echo "# $(sql "SELECT status, error FROM sft_run_table WHERE id = '$mrun'")"
	fi
	call "sft_wait(bigint, interval)" "SELECT sft_wait($mrun, '300 ms')"
	call "sft_run_active(bigint)" "SELECT sft_run_active($mrun)"
	call "view sft_progress" "SELECT * FROM sft_progress WHERE run = $mrun"
	call "sft_loss_chart(bigint)" "SELECT sft_loss_chart($mrun)"
	call "sft_resume(bigint)" "SELECT sft_resume($mrun)"
	call "sft_run_drop(bigint)" "SELECT sft_run_drop($mrun)"
	call "sft_model_drop(text)" "SELECT sft_model_drop('mbase')"
	calls_anytime
	ok "$MODE: the long run was still active at the end of the calls" \
		equals "$(sql "SELECT status FROM sft_run_table WHERE id = $mrun")" running
	call "sft_cancel(bigint)" "SELECT sft_cancel($mrun)"
	PHASE=after
	ok "$MODE: the long run is cancelled" equals "$(run_status "$mrun")" cancelled
	calls_anytime
	call "sft_resume(bigint)" "SELECT sft_resume($mrun)"
	ok "$MODE: the resumed run is training" \
		wait_until "SELECT status = 'running' AND sft_run_active(id) FROM sft_run_table WHERE id = $mrun" 300
	call "sft_wait(bigint, interval)" "SELECT sft_wait($mrun, '300 ms')"
	call "sft_cancel(bigint)" "SELECT sft_cancel($mrun)"
	call "sft_wait(bigint, interval)" "SELECT sft_wait($mrun, '60 s')"
	call "sft_run_drop(bigint)" "SELECT sft_run_drop($mrun)"
	ok "$MODE: the long run is dropped" equals "$(sql "SELECT count(*) FROM sft_run_table WHERE id = $mrun")" 0
	# a short run to its end: the worker's success path under the same settings
	call "sft_train(text, text, text, integer, double precision, integer, integer, jsonb)" \
		"SELECT sft_train('evil.data', 'mbase', 'mshort_$tag', epochs => 1, learning_rate => 0.01, max_length => 64, batch_size => 16)"
	short=$(sql "SELECT id FROM sft_run_table WHERE output = 'mshort_$tag'")
	call "sft_wait(bigint, interval)" "SELECT sft_wait($short, '60 s')"
	ok "$MODE: the short run succeeded" equals "$(run_status "$short")" succeeded
	call "sft_generate(text, jsonb, integer, double precision, integer, double precision, bigint, text[], jsonb)" \
		"SELECT sft_generate('mshort_$tag', $ASK, max_new_tokens => 4)"
	call "sft_model_drop(text)" "SELECT sft_model_drop('mshort_$tag')"
	call "sft_run_drop(bigint)" "SELECT sft_run_drop($short)"
	call "sft_model_drop(text)" "SELECT sft_model_drop('mlong_$tag')"
}

echo "# round 1: SET search_path = evil, pg_catalog, public in mallory's session"
MODE=session
round
echo "# round 2: ALTER ROLE mallory SET search_path = evil, pg_catalog, public (the worker gets it too)"
sql "ALTER ROLE mallory SET search_path = evil, pg_catalog, public" >/dev/null
MODE=role_default
round
sql "ALTER ROLE mallory RESET search_path" >/dev/null
echo "# $calls calls, $call_errors of them ended in an error (expected: other roles' objects, file access)"

# ---------------------------------------------------------------------------
# Coverage: every function and view of the extension was called above
# ---------------------------------------------------------------------------
extension_objects=$(sql "SELECT p.proname || '(' || oidvectortypes(p.proargtypes) || ')'
	  FROM pg_depend d JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sft')
	UNION ALL
	SELECT 'view ' || c.relname
	  FROM pg_depend d JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND c.relkind IN ('v', 'm')
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sft')
	ORDER BY 1")
ok "coverage: the extension's functions and views are listed" test "$(wc -l <<<"$extension_objects")" -ge 40
declare -A exists=()
while IFS= read -r sig; do
	[ -n "$sig" ] || continue
	exists[$sig]=1
	ok "coverage: called with evil first in search_path: $sig" test -n "${covered[$sig]:-}"
done <<<"$extension_objects"
for sig in "${!covered[@]}"; do
	[ -n "${exists[$sig]:-}" ] || ok "coverage: the suite calls an existing function: $sig" false
done

finish
