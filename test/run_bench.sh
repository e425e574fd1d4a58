#!/bin/bash
# make bench: every test/bench/*.sh on a throwaway cluster (installed build).
# Each script prints its own table: medians, and ratios against the reference
# measured side by side in the same run.  Pass script names to run a subset:
#   make bench BENCH="conversation tokenizer"
set -u
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-pg_config}
source test/cluster.sh
make -s install >/dev/null || { echo "make install failed"; exit 1; }
cluster_start "shared_buffers = 512MB" "max_parallel_workers_per_gather = 0" || exit 1
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
status=0
for s in test/bench/*.sh; do
	name=$(basename "$s" .sh)
	if [ -n "${BENCH:-}" ] && ! [[ " $BENCH " == *" $name "* ]]; then continue; fi
	echo
	echo "== bench $name"
	bash "$s" || { echo "bench $name FAILED"; status=1; }
done
exit $status
