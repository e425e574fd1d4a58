#!/bin/bash
# build_chat_template.sh: builds the chat template fuzz target with clang's
# libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer, and a small seed
# corpus (templates in the published shapes, a few conversations).
#
#   test/fuzz/build_chat_template.sh [outdir]      (default /tmp/sft-fuzz)
#   nice outdir/fuzz_chat_template -max_total_time=600 -max_len=2048 \
#        outdir/corpus/chat_template outdir/seeds/chat_template
# (run from the repository root, or set SFT_FIXTURES to test/fixtures)
set -eu
cd "$(dirname "$0")/../.."
out=${1:-/tmp/sft-fuzz}
CC=${CLANG:-clang}
mkdir -p "$out/seeds/chat_template" "$out/corpus/chat_template"
dep_cflags=$(pkg-config --cflags json-c libpcre2-8 2>/dev/null || echo "-I/usr/include/json-c")
dep_libs=$(pkg-config --libs json-c libpcre2-8 2>/dev/null || echo "-ljson-c -lpcre2-8")
core="src/core/common.c src/core/unicode.c src/core/unicode_tables.c src/core/tokenizer.c \
src/core/tokenizer_encode.c src/core/tokenizer_decode.c src/core/conversation.c src/core/chat_template.c \
src/core/chat_template_jinja.c src/core/jinja.c src/core/jinja_eval.c"
flags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -Isrc/core $dep_cflags"
san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
$CC $flags $san -o "$out/fuzz_chat_template" test/fuzz/fuzz_chat_template.c $core $dep_libs -lm
# seeds: the fixture configs' templates, and conversations (contents split by NUL)
for f in test/fixtures/tiny_config_*.json; do
	jq -j '.chat_template' "$f" >"$out/seeds/chat_template/$(basename "$f" .json)"
done
printf '\x01Hi\x00Hello!\x00More?\x00Sure.' >"$out/seeds/chat_template/conv_plain"
printf '\x07Be nice.\x00 Hi there \x00\tHello! \n\x00<|im_end|>' >"$out/seeds/chat_template/conv_system"
printf '\x02\xe3\x80\x80x\x1c\x00\xef\xbb\xbfy\xc2\x85\x00\n\nz' >"$out/seeds/chat_template/conv_spaces"
printf '\x01q\x00<think>\nplan\n</think>\n\na\x00<tool_response>x</tool_response>\x00a</think>b</think>c' \
	>"$out/seeds/chat_template/conv_think"
echo "built $out/fuzz_chat_template; seeds in $out/seeds/chat_template"
