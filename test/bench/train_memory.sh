#!/bin/bash
# train_memory.sh: sft.max_memory's estimate against the peak resident memory
# (VmHWM) of the training worker, per family, at T = 512 (batch_size 1,
# max_length 512), full fine-tuning, the real shapes of the small models of
# each family (random weights from test/fixtures/configs/; SmolLM3-3B with 4
# of its 36 layers, which would need 48 GB whole; the Llama row is the
# SmolLM2-135M shape: Llama-3.2-1B would need 20 GB).  The estimate is the figure
# sft_train refuses with under a tiny sft.max_memory, plus the data the worker
# counts; the peak is read from /proc while the worker runs: VmHWM (which
# also counts the server's shared buffers the worker touched, up to
# shared_buffers, not the run's to plan for) and the largest RssAnon sampled
# every 0.2 s (the process's own memory).  Target: within 10%.  Each family needs up to 11 GB: the script waits for
# MemAvailable >= need + 3 GB before each (SFT_BENCH_MEMORY_FAMILIES narrows).
set -eu
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
FAMILIES=${SFT_BENCH_MEMORY_FAMILIES-smollm2-135m gemma-3-270m qwen2.5-0.5b qwen3-0.6b smollm3-3b}
PSQL="psql -X -q -At -v ON_ERROR_STOP=1"
export PGOPTIONS="-c client_min_messages=warning"
load() { cut -d' ' -f1-3 /proc/loadavg; }

$PSQL -c "CREATE EXTENSION IF NOT EXISTS sft" >/dev/null
$PSQL -v tokjson="$(cat test/fixtures/tiny_bpe.json)" -v tokcfg="$(cat test/fixtures/tiny_config_chatml.json)" <<'SQL' >/dev/null
SELECT sft_tokenizer_load('bench_mem_tok', :'tokjson', :'tokcfg')
 WHERE NOT EXISTS (SELECT FROM sft_tokenizers WHERE name = 'bench_mem_tok');
DROP TABLE IF EXISTS bench_mem_rows;
-- two conversations cut at 512 tokens: two optimizer steps of T = 512
CREATE TABLE bench_mem_rows AS
  SELECT jsonb_build_array(
           jsonb_build_object('role', 'user', 'content', repeat('Tell me about the sea ' || n || '. ', 14)),
           jsonb_build_object('role', 'assistant', 'content', repeat('The sea is wide and the waves are high. ', 40)))
         AS messages
    FROM generate_series(1, 2) n;
SQL

config_of() {	# family -> config json
	case $1 in
		smollm2-135m) echo '{"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
			"num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
			"max_position_embeddings": 2048, "rope_theta": 100000, "tie_word_embeddings": true}' ;;
		smollm3-3b) python3 -c 'import json,sys; c=json.load(open("test/fixtures/configs/smollm3-3b.json"))
c["num_hidden_layers"]=4
for k in ("no_rope_layers","layer_types"):
    if k in c: c[k]=c[k][:4]
print(json.dumps(c))' ;;
		*) cat "test/fixtures/configs/$1.json" ;;
	esac
}

printf '%-16s %11s %9s %9s %7s %9s %7s %6s  %s\n' "family, T=512" "parameters" "estimate" "VmHWM" "ratio" "RssAnon" "ratio" "steps" "load average"
printf '%-16s %11s %9s %9s %7s %9s %7s\n' "" "" "MB" "MB" "" "peak MB" ""
for fam in $FAMILIES; do
	cfg=$(config_of "$fam")
	$PSQL -c "SELECT sft_model_drop(name) FROM sft_models WHERE name IN ('bench_mem', 'bench_mem_out')" >/dev/null
	$PSQL -c "SELECT sft_run_drop(id) FROM sft_run_table WHERE output = 'bench_mem_out'" >/dev/null
	until [ $(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1048576 )) -ge 6 ]; do sleep 30; done
	# the caller's estimate (before any row is read): the figure of its refusal under 16 MB
	est=$($PSQL -v cfg="$cfg" -v threads="$THREADS" 2>&1 <<'SQL' | sed -n 's/.*training would need about \([0-9]*\) MB.*/\1/p'
SET sft.max_memory = '64GB';
SELECT sft_model_create('bench_mem', 'bench_mem_tok', :'cfg'::jsonb, 1);
SET sft.max_memory = '16MB';
SET sft.threads = :threads;
SELECT sft_train('bench_mem_rows', 'bench_mem', 'bench_mem_out', epochs => 1, max_length => 512,
  batch_size => 1, options => '{"too_long": "truncate"}');
SQL
	)
	[ -n "$est" ] || { echo "$fam: no estimate"; exit 1; }
	need_gb=$(( est / 1024 + 1 ))
	until [ $(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1048576 )) -ge $(( need_gb + 3 )) ]; do
		echo "  (waiting for $((need_gb + 3)) GB available: $(free -g | awk '/Mem:/ {print $7}') GB)" >&2
		sleep 30
	done
	params=$($PSQL -c "SELECT parameters FROM sft_models WHERE name = 'bench_mem'")
	run=$($PSQL -c "SET sft.threads = $THREADS" -c "SET sft.max_memory = '64GB'" -c "SELECT sft_train('bench_mem_rows', 'bench_mem', 'bench_mem_out',
		epochs => 1, learning_rate => 1e-5, max_length => 512, batch_size => 1,
		options => '{\"too_long\": \"truncate\"}')")
	pid=
	for i in $(seq 1 600); do
		pid=$($PSQL -c "SELECT pid FROM pg_stat_activity WHERE query = 'sft training run $run'")
		[ -n "$pid" ] && break
		sleep 0.1
	done
	hwm=0 anon=0
	while [ -n "$pid" ] && [ -r /proc/$pid/status ]; do
		read -r v a <<<"$(awk '/VmHWM/ {h = $2} /RssAnon/ {a = $2} END {print h, a}' /proc/$pid/status 2>/dev/null || true)"
		[ -n "$v" ] && hwm=$v
		[ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
		sleep 0.2
	done
	status=$($PSQL -c "SELECT sft_wait($run)")
	[ "$status" = succeeded ] || { $PSQL -c "SELECT error FROM sft_runs WHERE id = $run"; echo "run $status"; exit 1; }
	steps=$($PSQL -c "SELECT steps FROM sft_runs WHERE id = $run")
	hwm_mb=$(( hwm / 1024 )) anon_mb=$(( anon / 1024 ))
	printf '%-16s %11s %9s %9s %7.3f %9s %7.3f %6s  %s\n' "$fam" "$params" "$est" "$hwm_mb" \
		"$(awk -v e="$est" -v h="$hwm_mb" 'BEGIN { print e / h }')" "$anon_mb" \
		"$(awk -v e="$est" -v h="$anon_mb" 'BEGIN { print e / h }')" "$steps" "$(load)"
	$PSQL -c "SELECT sft_model_drop(name) FROM sft_models WHERE name IN ('bench_mem', 'bench_mem_out')" >/dev/null
	$PSQL -c "SELECT sft_run_drop(id) FROM sft_run_table WHERE output = 'bench_mem_out'" >/dev/null
done
