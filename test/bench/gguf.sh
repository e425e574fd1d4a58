#!/bin/bash
# gguf.sh: batch-1 decode, ours (the C core, with f32, bf16 and q8_0 decode
# weights as sft.generate_dtype chooses) against llama.cpp (npm
# node-llama-cpp 3.21.1, prebuilt CPU binary) on the same weights: a
# SmolLM2-135M-shaped random model exported by our GGUF writer as f32, f16,
# bf16 and q8_0 (test/bench/bench_gguf.c make); each of ours is set against
# llama.cpp at the same dtype (ours bf16 against llama.cpp's bf16 and f16,
# the two 2-byte formats).  Equal threads, for each count
# in SFT_BENCH_THREADS (default "1 2": on a shared, loaded machine llama.cpp's
# spinning thread pool loses most at 2 threads, so both are shown), the same
# 32-token prompt, N greedy single-token steps each (SFT_BENCH_TOKENS,
# default 32), decode time only
# (model loading and the prompt are outside the clock).  ROUNDS rounds
# (default 5), each running ours at f32, bf16, q8_0, then llama.cpp at f32, f16, bf16, q8_0, one after
# another; medians of tokens/s and the median of the per-round ratios
# ours / llama.cpp.  Validates first: llama.cpp's f32 greedy ids equal ours.
set -u
cd "$(dirname "$0")/../.."
THREAD_COUNTS=${SFT_BENCH_THREADS:-1 2}
N=${SFT_BENCH_TOKENS:-32}
ROUNDS=${SFT_BENCH_ROUNDS:-5}
[ -x test/bench/bench_gguf ] || make -s test/bench/bench_gguf || exit 1
if ! modules=$(bash test/parity/llamacpp/install_ref.sh); then
	echo "SKIP: node-llama-cpp unavailable"
	exit 0
fi
export SFT_LLAMA_MODULES=$modules
work=$(mktemp -d /tmp/sft-bench-gguf.XXXXXX)
trap 'rm -rf "$work"' EXIT
test/bench/bench_gguf make "$work" || { echo "bench_gguf make failed"; exit 1; }
prompt=$(seq 1 32 | awk '{printf "%s%d", (NR > 1 ? "," : ""), ($1 * 7919) % 49000 + 100}')
ours() { OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_gguf decode "$work/hf" "$THREADS" "$N" "$prompt" "${1:-f32}"; }
theirs() { node test/parity/llamacpp/llama_ref.mjs bench "$work/model-$1.gguf" "$prompt" "$N" "$THREADS"; }

for THREADS in $THREAD_COUNTS; do
echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg) before; $THREADS threads, $N decode steps, $ROUNDS rounds)"
a=$(ours | sed -n 's/^ids //p')
b=$(theirs f32 | sed -n 's/^ids //p')
same=$(node -e "const a='$a'.split(','), b='$b'.split(','); let k=0; while (k < a.length && a[k] === b[k]) k++; console.log(k)")
echo "  validation: llama.cpp f32 greedy ids equal ours for $same of $N steps"
[ "$same" -ge 8 ] || { echo "validation failed: ours $a, llama.cpp $b"; exit 1; }

declare -A rates
for r in $(seq 1 "$ROUNDS"); do
	for d in f32 bf16 q8_0; do
		rates[ours_$d,$r]=$(ours $d | sed -n 's/^tokens_per_s //p')
	done
	for d in f32 f16 bf16 q8_0; do
		rates[$d,$r]=$(theirs $d | sed -n 's/^tokens_per_s //p')
	done
	echo "  round $r: ours f32 ${rates[ours_f32,$r]}, bf16 ${rates[ours_bf16,$r]}, q8_0 ${rates[ours_q8_0,$r]}; llama.cpp f32 ${rates[f32,$r]}, f16 ${rates[f16,$r]}, bf16 ${rates[bf16,$r]}, q8_0 ${rates[q8_0,$r]} tokens/s"
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
all() { for r in $(seq 1 "$ROUNDS"); do echo -n "${rates[$1,$r]} "; done; }
ratios() { for r in $(seq 1 "$ROUNDS"); do awk -v a="${rates[$1,$r]}" -v b="${rates[$2,$r]}" 'BEGIN {printf "%.3f ", a / b}'; done; }
printf '  %-36s %10s %12s %10s %18s\n' "decode, 135M shape, $THREADS thread(s)" "ours" "llama.cpp" "MB" "ours / llama.cpp"
for pair in "f32 f32" "bf16 bf16" "bf16 f16" "q8_0 q8_0"; do
	set -- $pair
	printf '  %-36s %10s %12s %10s %18s\n' "ours $1 vs llama.cpp $2" "$(all ours_$1 | median)" "$(all $2 | median)" \
		"$(du -m "$work/model-$2.gguf" | cut -f1)" "$(ratios ours_$1 $2 | median)x"
done
unset rates
done
