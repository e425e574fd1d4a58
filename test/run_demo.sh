#!/bin/bash
# make demo: the main job end to end on a throwaway cluster, printing every
# SQL statement it runs (psql -e):
#   examples/demo_tokenizer.sql  a byte-level tokenizer built in SQL
#   examples/demo_data.sql       generated conversations: identity + four skills, held-out split
#   examples/demo_view.sql       the seed recipe's shaping as a view
#   examples/demo_train.sql      a small model trained in the background, before/after answers,
#                                held-out accuracy per skill, the loss chart
# The chart lands in $SFT_DEMO_OUT (default /tmp/sft-demo) as loss.svg, and
# as loss.png when rsvg-convert (Debian librsvg2-bin) is installed.
set -u
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-pg_config}
demo_start=$(date +%s)
elapsed() { local s=$(($(date +%s) - demo_start)); printf '%d:%02d' $((s / 60)) $((s % 60)); }

source test/cluster.sh
make -s install >/dev/null || { echo "make install failed"; exit 1; }
cluster_start || exit 1
out=${SFT_DEMO_OUT:-/tmp/sft-demo}
mkdir -p "$out"
psql -X -q -c "CREATE EXTENSION sft" || exit 1
for f in demo_tokenizer demo_data demo_view demo_train; do
	echo
	echo "==> examples/$f.sql (at $(elapsed))"
	if ! psql -X -e -v ON_ERROR_STOP=1 -v chart="$out/loss.svg" -f "examples/$f.sql" 2>&1; then
		echo "demo failed in examples/$f.sql"
		exit 1
	fi
done
if command -v rsvg-convert >/dev/null 2>&1; then
	rsvg-convert -o "$out/loss.png" "$out/loss.svg" && echo "loss chart as PNG: $out/loss.png"
fi
echo
echo "demo finished: $(elapsed) (min:s) since the cluster setup began"
