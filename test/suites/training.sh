#!/bin/bash
# training.sh: training-run behaviour that needs a server of its own, because
# it restarts or reconfigures it (pg_regress shares one cluster):
#   - the worker is killed with SIGKILL: the postmaster restarts every
#     process, the run shows as interrupted, and sft_resume finishes it with
#     exactly the weights of an uninterrupted run of the same seed; nothing
#     half-written survives (large objects, rows);
#   - sft_wait sends NOTICEs with epoch, step, loss and tokens/s while it waits;
#   - no free background worker slot: a clear error with a hint about
#     max_worker_processes, and no run row left behind;
#   - without shared_preload_libraries training refuses clearly.
# Starts its own throwaway cluster with test/cluster.sh.  Ends with
# "N passed, N failed".
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
	fi
}
equals() { [ "$1" = "$2" ] || { echo "# got '$1', expected '$2'"; return 1; }; }
finish() {
	echo "$passed passed, $failed failed"
	exit 0
}

# Our own cluster; the suite driver's variables stay untouched outside.
unset PGHOST PGPORT SFT_TMP SFT_PGDATA
source test/cluster.sh
if ! cluster_start "sft.max_concurrent_runs = 4" >/tmp/sft-training-suite-start.log 2>&1; then
	cat /tmp/sft-training-suite-start.log
	echo "not ok - could not start a cluster"
	failed=1
	finish
fi
PSQL="psql -X -q -At -v ON_ERROR_STOP=1"
export PGOPTIONS="-c client_min_messages=warning"
sql() { $PSQL -c "$1" 2>&1; }

restart_server() {
	run_as_server "$PGBIN/pg_ctl" -D "$SFT_PGDATA" -l "$SFT_TMP/server.log" -w restart >/dev/null 2>&1
}

# wait_until SQL [tries]: polls (every 0.1 s) until SQL returns t
wait_until() {
	local i
	for i in $(seq 1 "${2:-600}"); do
		[ "$($PSQL -c "$1" 2>/dev/null)" = t ] && return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------------------
# Set-up: a tiny model and a table of conversations
# ---------------------------------------------------------------------------
$PSQL -v tokjson="$(cat test/fixtures/tiny_bpe.json)" -v tokcfg="$(cat test/fixtures/tiny_config_chatml.json)" <<'SQL' >"$SFT_TMP/setup.log" 2>&1
CREATE EXTENSION sft;
SELECT sft_tokenizer_load('tok', :'tokjson', :'tokcfg');
SELECT sft_model_create('base', 'tok', '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 386, "max_position_embeddings": 512}', 1);
CREATE TABLE data AS
  SELECT n, sft_from_pair('Question number ' || n, 'Answer number ' || n) AS messages
    FROM generate_series(1, 1000) n;
SQL
if grep -q ERROR "$SFT_TMP/setup.log"; then
	cat "$SFT_TMP/setup.log"
	echo "not ok - set-up: extension, tokenizer, model, data"
	failed=$((failed + 1))
	finish
fi
echo "ok - set-up: extension, tokenizer, model, data"
passed=$((passed + 1))
lo_before=$(sql "SELECT count(*) FROM pg_largeobject_metadata")

ARGS="epochs => 8, learning_rate => 0.003, max_length => 96, batch_size => 2, options => '{\"seed\": 5, \"dropout\": 0.1}'"

# ---------------------------------------------------------------------------
# The reference run, and sft_wait's NOTICEs while it runs
# ---------------------------------------------------------------------------
ref=$(sql "SET sft.threads = 1; SELECT sft_train('data', 'base', 'reference', $ARGS)")
ok "reference run queued" equals "$(echo "$ref" | grep -cE '^[0-9]+$')" 1
ok "reference run succeeded" equals "$(sql "SELECT sft_wait($ref)")" succeeded

# ---------------------------------------------------------------------------
# SIGKILL the worker mid-run: crash restart, interrupted, resumed, identical
# ---------------------------------------------------------------------------
run=$(sql "SET sft.threads = 1; SELECT sft_train('data', 'base', 'killed', $ARGS)")
ok "second run queued" equals "$(echo "$run" | grep -cE '^[0-9]+$')" 1
ok "first epoch finished" wait_until "SELECT count(*) >= 1 FROM sft_run_epochs WHERE run_id = $run"
pid=$(sql "SELECT pid FROM sft_progress WHERE run = $run")
ok "worker pid visible in sft_progress" equals "$(echo "$pid" | grep -cE '^[0-9]+$')" 1
# sft_wait reports at once, then every 5 s, while the run is going
notices=$($PSQL -c "SET client_min_messages = notice; SELECT sft_wait($run, '300 ms')" 2>&1)
ok "sft_wait reports epoch, step, loss and tokens/s" \
	grep -qE "NOTICE: +run $run: [a-z]+, epoch [0-9]+/8, step [0-9]+/4000, loss [0-9.]+, [0-9]+ tokens/s" <<<"$notices"
ok "sft_wait with a timeout returns the status" equals "$(echo "$notices" | tail -1)" running
ok "worker killed with SIGKILL" kill -9 "$pid"
sleep 1
ok "server back after the crash restart" wait_until "SELECT true" 300
ok "server log shows the crash restart" grep -q "terminated by signal 9" "$SFT_TMP/server.log"
ok "the killed run shows as interrupted" \
	equals "$(sql "SELECT status FROM sft_runs WHERE id = $run")" interrupted
ok "no live run left in sft_progress" equals "$(sql "SELECT count(*) FROM sft_progress")" 0
ok "sft_wait returns interrupted" equals "$(sql "SELECT sft_wait($run)")" interrupted
kept=$(sql "SELECT count(*) FROM sft_run_epochs WHERE run_id = $run AND checkpoint IS NOT NULL")
ok "the last epoch checkpoint survived" equals "$kept" 1
# every large object belongs to a model or a kept checkpoint: nothing half-written
ok "no orphaned large object after the crash" equals \
	"$(sql "SELECT count(*) FROM pg_largeobject_metadata l WHERE NOT EXISTS (SELECT FROM sft_models WHERE weights = l.oid) AND NOT EXISTS (SELECT FROM sft_run_epochs WHERE checkpoint = l.oid)")" 0
ok "sft_resume continues the run" equals "$(sql "SELECT sft_resume($run)")" "$run"
ok "resumed run succeeded" equals "$(sql "SELECT sft_wait($run)")" succeeded
ok "two attempts recorded" equals "$(sql "SELECT attempts FROM sft_runs WHERE id = $run")" 2
ok "same weights as the uninterrupted run" equals \
	"$(sql "SELECT md5(lo_get(a.weights)) = md5(lo_get(b.weights)) FROM sft_models a, sft_models b WHERE a.name = 'reference' AND b.name = 'killed'")" t
ok "same epoch losses as the uninterrupted run" equals \
	"$(sql "SELECT count(*) FILTER (WHERE a.train_loss = b.train_loss) FROM sft_run_epochs a JOIN sft_run_epochs b USING (epoch) WHERE a.run_id = $ref AND b.run_id = $run")" 8
ok "log has every step once" equals \
	"$(sql "SELECT count(*) = count(DISTINCT step) AND max(step) = 4000 FROM sft_run_log WHERE run_id = $run")" t
sql "SELECT sft_model_drop('killed'), sft_model_drop('reference'), sft_run_drop($run), sft_run_drop($ref)" >/dev/null
ok "models and runs dropped: large objects back to the start" equals \
	"$(sql "SELECT count(*) FROM pg_largeobject_metadata")" "$lo_before"

# ---------------------------------------------------------------------------
# No free background worker slot (the logical replication launcher takes the only one)
# ---------------------------------------------------------------------------
sql "ALTER SYSTEM SET max_worker_processes = 1" >/dev/null
restart_server
ok "server restarted with max_worker_processes = 1" wait_until "SELECT current_setting('max_worker_processes') = '1'" 100
err=$(sql "SELECT sft_train('data', 'base', 'no_slot', $ARGS)")
ok "no worker slot: clear error" grep -q "could not start a background worker for training run [0-9]*: no free worker slot" <<<"$err"
ok "no worker slot: hint names max_worker_processes" grep -q "HINT: *Raise max_worker_processes (now 1)" <<<"$err"
ok "no worker slot: nothing left behind" equals \
	"$(sql "SELECT count(*) FROM sft_run_table WHERE output = 'no_slot'")/$(sql "SELECT count(*) FROM sft_progress")" "0/0"
sql "ALTER SYSTEM RESET max_worker_processes" >/dev/null

# ---------------------------------------------------------------------------
# Without shared_preload_libraries
# ---------------------------------------------------------------------------
sql "ALTER SYSTEM SET shared_preload_libraries = 'plpgsql'" >/dev/null
restart_server
err=$(sql "SELECT sft_train('data', 'base', 'no_preload', $ARGS)")
ok "not preloaded: training refuses clearly" grep -q "sft training needs the sft library in shared_preload_libraries" <<<"$err"
ok "not preloaded: runs view still works" equals "$(sql "SELECT count(*) >= 0 FROM sft_runs")" t
sql "ALTER SYSTEM RESET shared_preload_libraries" >/dev/null

finish
