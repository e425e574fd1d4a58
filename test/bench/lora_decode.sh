#!/bin/bash
# lora_decode.sh: serving a LoRA adapter on its shared base (the decoder adds
# s B(A x) per adapted projection) against the merged model, decode and
# prefill, SmolLM2-135M shape, all-linear r = 16.
#   SFT_BENCH_THREADS (default 2)
set -u
cd "$(dirname "$0")/../.."
THREADS=${SFT_BENCH_THREADS:-2}
[ -x test/bench/bench_lora_decode ] || make -s test/bench/bench_lora_decode || exit 1
echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg) before)"
OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_lora_decode "$THREADS" 64 256 16
