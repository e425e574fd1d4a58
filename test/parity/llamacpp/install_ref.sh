#!/bin/bash
# install_ref.sh: installs the pinned llama.cpp reference, npm node-llama-cpp
# with its prebuilt CPU binary @node-llama-cpp/linux-x64 (never built from
# source: NODE_LLAMA_CPP_SKIP_DOWNLOAD=true), into
# ${SFT_CACHE:-$HOME/.cache/sft}/llama-ref unless it is there already, and
# prints that node_modules directory.  Exit status 1 (with the reason on
# stderr) when node/npm are missing or npm cannot install.  Used by
# test/suites/gguf_llamacpp.sh and test/bench/gguf.sh.
set -u
VERSION=3.21.1
cache=${SFT_CACHE:-$HOME/.cache/sft}/llama-ref
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "node/npm not installed (make deps)" >&2
	exit 1
fi
have() {
	node -e "process.exit(require('$cache/node_modules/$1/package.json').version === '$VERSION' ? 0 : 1)" 2>/dev/null
}
if ! have node-llama-cpp || ! have @node-llama-cpp/linux-x64; then
	mkdir -p "$cache" || exit 1
	[ -f "$cache/package.json" ] || echo '{"name":"sft-llama-ref","private":true}' >"$cache/package.json"
	echo "installing node-llama-cpp $VERSION into $cache" >&2
	log=$(mktemp)
	if ! (cd "$cache" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true timeout 900 npm install --no-audit --no-fund \
		--loglevel=error "node-llama-cpp@$VERSION" "@node-llama-cpp/linux-x64@$VERSION") >"$log" 2>&1; then
		tail -5 "$log" >&2
		rm -f "$log"
		echo "npm could not install node-llama-cpp (network?)" >&2
		exit 1
	fi
	rm -f "$log"
fi
echo "$cache/node_modules"
