#!/bin/bash
# make demo: the main job end to end on a throwaway cluster, printing every
# SQL statement it runs.
set -u
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-pg_config}
source test/cluster.sh
make -s install >/dev/null || { echo "make install failed"; exit 1; }
cluster_start || exit 1
psql -X -q -c "CREATE EXTENSION sft" || exit 1
for f in examples/demo_data.sql; do
	echo "==> $f"
	psql -X -e -v ON_ERROR_STOP=0 -f "$f" 2>&1
done
echo "demo finished"
