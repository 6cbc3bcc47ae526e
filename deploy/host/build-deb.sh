#!/bin/sh
# Build a Debian package of the host agent from the layout install.sh stages.
#
#   build-deb.sh --wheel FILE [--out DIR] [--python PATH] [--find-links DIR] [--compress xz|gzip|none]
#
# The venv is built here on PATH (default /usr/bin/python3) and links it, so build on the Debian
# release (and CPU architecture) the hosts run. /etc/pspe/agent.toml is a conffile: dpkg keeps an
# operator's edits. Prints the .deb's path last.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(pwd)/dist PYTHON=/usr/bin/python3 WHEEL= FIND_LINKS= COMPRESS=xz
while [ $# -gt 0 ]; do
    case $1 in
        --wheel) WHEEL=$2; shift ;;
        --out) OUT=$2; shift ;;
        --python) PYTHON=$2; shift ;;
        --find-links) FIND_LINKS=$2; shift ;;
        --compress) COMPRESS=$2; shift ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
[ -f "$WHEEL" ] || { echo "build-deb.sh: --wheel FILE is required" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/root

"$HERE/install.sh" --root "$ROOT" --wheel "$WHEEL" --python "$PYTHON" ${FIND_LINKS:+--find-links "$FIND_LINKS"} \
    --unit-dir /lib/systemd/system --bin-dir /usr/bin --no-config --no-enable >&2
rm "$ROOT/opt/pspe/install.conf"   # dpkg owns these files, not install.sh --uninstall
cp "$ROOT/etc/pspe/agent.toml.example" "$ROOT/etc/pspe/agent.toml"
chmod 0640 "$ROOT/etc/pspe/agent.toml"

VERSION=$(basename "$WHEEL" | cut -d- -f2)
ARCH=$(dpkg --print-architecture)
PYBIN=$(basename "$(readlink "$ROOT/opt/pspe/venv/bin/python")")   # e.g. python3.11
mkdir "$ROOT/DEBIAN"
cat >"$ROOT/DEBIAN/control" <<EOF
Package: pspe-agent
Version: $VERSION
Architecture: $ARCH
Maintainer: PSPE maintainers <pspe@localhost>
Depends: $PYBIN
Section: admin
Priority: optional
Installed-Size: $(du -sk "$ROOT" | cut -f1)
Description: PSPE host agent: right-sizes sessions ahead of demand
 Watches every session's CPU, memory, network and disk I/O, forecasts the next
 minutes and moves each session's cgroup limits ahead of demand. A private venv
 in /opt/pspe with only the agent's dependencies.
EOF
echo /etc/pspe/agent.toml >"$ROOT/DEBIAN/conffiles"

cat >"$ROOT/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # as Debian's py3compile does: the .pyc files are made here and removed by prerm
    /opt/pspe/venv/bin/python -m compileall -q -j 0 /opt/pspe/venvs >/dev/null || true
    /opt/pspe/venv/bin/pspe-agent config check --config /etc/pspe/agent.toml >/dev/null \
        || echo "pspe-agent: fix /etc/pspe/agent.toml, then: systemctl restart pspe-agent" >&2
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable pspe-agent.service
        # an upgrade must load the new venv; sessions survive the restart (KillMode=process)
        systemctl restart pspe-agent.service || true
    else
        systemctl --root=/ enable pspe-agent.service 2>/dev/null || true
    fi
fi
EOF
cat >"$ROOT/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl disable --now pspe-agent.service || true   # running sessions are left running
fi
find /opt/pspe/venvs -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
EOF
cat >"$ROOT/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/pspe /etc/pspe
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
EOF
chmod 0755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/prerm" "$ROOT/DEBIAN/postrm"

DEB=$OUT/pspe-agent_${VERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$ROOT" "$DEB" >&2
echo "$DEB"
