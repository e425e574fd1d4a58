#!/bin/sh
# Installs the Debian packages that building, testing and benchmarking sft
# need.  As root it runs apt-get; otherwise it prints the command to run.
set -e
PACKAGES="postgresql-15 postgresql-server-dev-15 \
libopenblas-dev libjson-c-dev libpcre2-dev pkg-config build-essential \
python3 python3-torch python3-jinja2 clang libclang-rt-14-dev \
libipc-run-perl"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js may come from NodeSource (npm bundled) or Debian (separate npm).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -z "$missing" ]; then
	echo "deps: all packages present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing"
	echo "deps: run as root: apt-get install -y$missing"
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
