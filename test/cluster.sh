# Sourced by the test, demo and bench drivers: starts a throwaway PostgreSQL
# cluster in a temporary directory on a free port and stops it on exit.
#
# After cluster_start: PGHOST (the socket directory), PGPORT, PGUSER and
# PGDATABASE are exported, SFT_TMP is a scratch directory the server can read
# and write, and run_as_server runs a command as the server's OS user.

PGBIN=${PGBIN:-$($PG_CONFIG --bindir 2>/dev/null || pg_config --bindir)}
export PGBIN PG_CONFIG

run_as_server() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

free_port() {
	local port
	for port in $(seq $((50000 + RANDOM % 10000)) 65000); do
		if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
			echo "$port"
			return
		fi
	done
}

cluster_stop() {
	if [ -n "${SFT_PGDATA:-}" ] && [ -f "$SFT_PGDATA/postmaster.pid" ]; then
		run_as_server "$PGBIN/pg_ctl" -D "$SFT_PGDATA" -m immediate stop >/dev/null 2>&1 || true
	fi
	if [ -n "${SFT_TMP:-}" ] && [ -z "${SFT_KEEP_TMP:-}" ]; then
		rm -rf "$SFT_TMP"
	fi
}

# cluster_start [extra postgresql.conf lines...]
cluster_start() {
	SFT_TMP=$(mktemp -d /tmp/sft-test.XXXXXX)
	chmod 755 "$SFT_TMP"
	[ "$(id -u)" = 0 ] && chown postgres: "$SFT_TMP"
	SFT_PGDATA=$SFT_TMP/data
	export SFT_TMP SFT_PGDATA
	trap cluster_stop EXIT
	run_as_server "$PGBIN/initdb" -D "$SFT_PGDATA" -U postgres -A trust \
		--no-sync -E UTF8 --locale=C.UTF-8 >"$SFT_TMP/initdb.log" 2>&1 || {
		cat "$SFT_TMP/initdb.log"; return 1; }
	PGPORT=$(free_port)
	cat >>"$SFT_PGDATA/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$SFT_TMP'
shared_preload_libraries = 'sft'
max_worker_processes = 16
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
	for line in "$@"; do echo "$line" >>"$SFT_PGDATA/postgresql.conf"; done
	run_as_server "$PGBIN/pg_ctl" -D "$SFT_PGDATA" -l "$SFT_TMP/server.log" -w start >/dev/null || {
		cat "$SFT_TMP/server.log"; return 1; }
	export PGHOST=$SFT_TMP PGPORT PGUSER=postgres PGDATABASE=postgres
}
