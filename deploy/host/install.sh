#!/bin/sh
# Install, upgrade or remove the PSPE host agent as a systemd service.
#
#   install.sh [options]              install or upgrade (a second run with the same wheel changes nothing)
#   install.sh --uninstall [--purge]  remove it; the config and state stay unless --purge
#
# Options:
#   --wheel FILE       the pspe wheel (default: the pspe-*.whl beside this script, else built from --source)
#   --source DIR       source tree to build the wheel from (default: the tree this script lies in)
#   --find-links DIR   take every dependency from the wheels in DIR, no index (default: ./wheels beside
#                      this script when present)
#   --python PATH      Python >= 3.11 the venv is built on (default: /usr/bin/python3)
#   --prefix DIR       venvs live in DIR/venvs/<version>-<digest>, DIR/venv links the active one (/opt/pspe)
#   --etc-dir DIR      agent.toml goes here, never overwritten (/etc/pspe)
#   --unit-dir DIR     pspe-agent.service goes here (/etc/systemd/system)
#   --bin-dir DIR      a pspe-agent link goes here (/usr/local/bin)
#   --root DIR         stage everything under DIR, as DESTDIR does (also $DESTDIR); installed files
#                      name the final paths, so the tree can be packaged or copied onto a host
#   --no-config        install agent.toml.example only (a package ships agent.toml as a conffile)
#   --no-enable        neither enable nor start the service
#   --purge            with --uninstall: also remove the config dir and the state dir
#
# The venv holds only the `agent` extra (no torch, mlflow, airflow: checked). A new version is built
# beside the running one, its config check must pass, then the link is switched and the service
# restarted; the previous venv is kept for a rollback (ln -sfn venvs/<old> DIR/venv).
set -eu

PREFIX=/opt/pspe ETC_DIR=/etc/pspe UNIT_DIR=/etc/systemd/system BIN_DIR=/usr/local/bin
ROOT=${DESTDIR:-} PYTHON=/usr/bin/python3 WHEEL= SOURCE= FIND_LINKS=
ACTION=install CONFIG=yes ENABLE=yes PURGE=no
UNIT=pspe-agent.service

say() { printf '%-11s %s\n' "$1" "$2"; }
die() { echo "install.sh: $*" >&2; exit 1; }
need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
    case $1 in
        --wheel|--source|--find-links|--python|--prefix|--etc-dir|--unit-dir|--bin-dir|--root) need_arg "$@" ;;
    esac
    case $1 in
        --wheel) WHEEL=$2; shift ;;
        --source) SOURCE=$2; shift ;;
        --find-links) FIND_LINKS=$2; shift ;;
        --python) PYTHON=$2; shift ;;
        --prefix) PREFIX=$2; shift ;;
        --etc-dir) ETC_DIR=$2; shift ;;
        --unit-dir) UNIT_DIR=$2; shift ;;
        --bin-dir) BIN_DIR=$2; shift ;;
        --root) ROOT=$2; shift ;;
        --no-config) CONFIG=no ;;
        --no-enable) ENABLE=no ;;
        --uninstall) ACTION=uninstall ;;
        --purge) PURGE=yes ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

# Paths end up in the unit, in sed expressions and under rm -rf: absolute, plain, never a system dir.
for p in "$PREFIX" "$ETC_DIR" "$UNIT_DIR" "$BIN_DIR" ${ROOT:+"$ROOT"}; do
    case $p in /*) ;; *) die "$p: not an absolute path" ;; esac
    case $p in *[!A-Za-z0-9/._+-]*) die "$p: only letters, digits and / . _ + - please" ;; esac
done
for p in "$PREFIX" "$ETC_DIR"; do
    case ${p%/} in ''|/usr|/usr/local|/etc|/opt|/var|/var/lib|/home|/root) die "refusing $p as a PSPE directory" ;; esac
done
ROOT=${ROOT%/}
HERE=$(cd "$(dirname "$0")" && pwd)
MANIFEST=$ROOT$PREFIX/install.conf
LIVE_SYSTEMD=no
[ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null && LIVE_SYSTEMD=yes

manifest_get() { [ -f "$MANIFEST" ] && sed -n "s/^$1=//p" "$MANIFEST" | tail -n 1 || true; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }
systemctl_offline() { command -v systemctl >/dev/null && systemctl --root="${ROOT:-/}" -q "$@"; }
. "$HERE/install-lib.sh"

if [ "$ACTION" = uninstall ]; then
    uninstall
    exit 0
fi

# -- where the pieces are: a release tarball (all beside this script) or the source tree ------------
if [ -f "$HERE/$UNIT" ]; then
    UNIT_SRC=$HERE/$UNIT EXAMPLE=$HERE/agent.example.toml
    [ -n "$WHEEL$SOURCE" ] || WHEEL=$(ls "$HERE"/pspe-*.whl 2>/dev/null | tail -n 1)
    [ -n "$FIND_LINKS" ] || { [ -d "$HERE/wheels" ] && FIND_LINKS=$HERE/wheels; } || true
else
    UNIT_SRC=$HERE/../systemd/$UNIT EXAMPLE=$HERE/../agent.example.toml
    [ -n "$SOURCE" ] || SOURCE=$(cd "$HERE/../.." && pwd)
fi
[ -f "$UNIT_SRC" ] && [ -f "$EXAMPLE" ] || die "cannot find $UNIT and agent.example.toml near $HERE"

check_python
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$WHEEL" ]; then
    [ -n "$SOURCE" ] || die "no pspe-*.whl beside $0: pass --wheel FILE or --source DIR"
    build_wheel "$SOURCE"
fi
[ -f "$WHEEL" ] || die "no wheel: $WHEEL"
ID=$(wheel_id "$WHEEL")
VENVS=$PREFIX/venvs
VENV=$VENVS/$ID

CHANGED=no
install_venv                      # sets CHANGED=yes when a new venv was built
install_config
check_config                      # a bad config stops here, the active venv untouched; sets STATE_DIR
activate_venv
install_dir "$STATE_DIR" 0755
install_unit
install_bin_link
write_manifest
start_service
echo "pspe-agent $ID: config $ETC_DIR/agent.toml, state $STATE_DIR, unit $UNIT_DIR/$UNIT${ROOT:+ (staged under $ROOT)}"
