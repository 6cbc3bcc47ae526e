#!/bin/sh
# Build the host release: the pspe wheel and a tarball an operator unpacks and runs install.sh from.
#
#   package.sh [--out DIR] [--python PATH] [--offline]
#
#   --out DIR      where the wheel and the tarball go (default: dist/ in the source tree)
#   --python PATH  Python >= 3.11 that builds the wheel (default: python3)
#   --offline      also put every dependency's wheel into the tarball (wheels/), so hosts install
#                  without an index; these wheels fit this Python version and CPU architecture only
#
# Prints the wheel's and the tarball's paths last.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=$SRC/dist PYTHON=python3 OFFLINE=no
say() { printf '%-11s %s\n' "$1" "$2" >&2; }
die() { echo "package.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift ;;
        --python) PYTHON=$2; shift ;;
        --offline) OFFLINE=yes ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done
. "$HERE/install-lib.sh"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

check_python
build_wheel "$SRC"
VERSION=$(basename "$WHEEL" | cut -d- -f2)
cp "$WHEEL" "$OUT/"

NAME=pspe-agent-$VERSION
if [ "$OFFLINE" = yes ]; then
    NAME=$NAME-$("$PYTHON" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')
fi
DIR=$TMP/$NAME
mkdir "$DIR"
cp "$HERE/install.sh" "$HERE/install-lib.sh" "$HERE/../agent.example.toml" "$HERE/../systemd/pspe-agent.service" \
    "$WHEEL" "$DIR/"
cp "$HERE/README.host" "$DIR/README"
if [ "$OFFLINE" = yes ]; then
    say fetching "the agent extra's wheels into wheels/"
    "$TMP/build-venv/bin/pip" download -q --disable-pip-version-check -d "$DIR/wheels" "$WHEEL[agent]" >&2
    rm -f "$DIR"/wheels/pspe-*.whl
fi
tar czf "$OUT/$NAME.tar.gz" --owner=0 --group=0 -C "$TMP" "$NAME"
echo "$OUT/$(basename "$WHEEL")"
echo "$OUT/$NAME.tar.gz"
