# Steps of install.sh (sourced by it; every path is the final one, "$ROOT" is prepended on disk).
# shellcheck shell=sh

# Packages that must never reach a host venv: the agent extra is light on purpose.
HEAVY='torch|lightning|pytorch-lightning|mlflow|mlflow-skinny|mlflow-tracing|apache-airflow'

check_python() {
    [ -x "$PYTHON" ] || PYTHON=$(command -v "$PYTHON" 2>/dev/null) || die "no Python at $PYTHON (use --python)"
    # The venv links its python here: the versioned real file, so an upgrade of python3 is seen.
    PYTHON=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON: Python >= 3.11 needed"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "$PYTHON cannot make venvs (apt-get install python3-venv)"
}

# Builds the wheel of source tree $1 into $TMP/wheel on $PYTHON, from a clean copy: setuptools
# writes build/ and *.egg-info into the tree it builds, and a stale build/lib would leak into the wheel.
build_wheel() {
    say building "a wheel from $1"
    mkdir -p "$TMP/src" "$TMP/wheel"
    (cd "$1" && tar cf - --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md agent profiles training) \
        | tar xf - -C "$TMP/src"
    "$PYTHON" -m venv "$TMP/build-venv"
    "$TMP/build-venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$TMP/wheel" "$TMP/src" >&2
    WHEEL=$(ls "$TMP"/wheel/pspe-*.whl)
}

# <version>-<first 12 hex of sha256(RECORD)>: RECORD lists every file's hash, so the id changes with
# the content and not with the zip's timestamps (a rebuilt identical wheel is the same install).
wheel_id() {
    "$PYTHON" - "$1" <<'EOF'
import hashlib, re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    records = [n for n in z.namelist() if re.fullmatch(r"pspe-[^/]+\.dist-info/RECORD", n)]
    if len(records) != 1:
        sys.exit(f"{sys.argv[1]}: not a pspe wheel")
    version = records[0].split("/")[0][len("pspe-"):-len(".dist-info")]
    print(f"{version}-{hashlib.sha256(z.read(records[0])).hexdigest()[:12]}")
EOF
}

install_venv() {
    if [ -f "$ROOT$VENV/.complete" ]; then
        say unchanged "$VENV"
        return
    fi
    rm -rf "$ROOT$VENV"
    mkdir -p "$ROOT$VENVS"
    "$PYTHON" -m venv "$ROOT$VENV"
    set -- -q --disable-pip-version-check
    [ -z "$FIND_LINKS" ] || set -- "$@" --no-index --find-links "$FIND_LINKS"
    [ -z "$ROOT" ] || set -- "$@" --no-compile   # a staged tree's .pyc would name the staging path
    "$ROOT$VENV/bin/pip" install "$@" "$WHEEL[agent]" >&2 || { rm -rf "$ROOT$VENV"; die "pip install failed"; }
    heavy=$("$ROOT$VENV/bin/pip" list --format=freeze 2>/dev/null | grep -iE "^($HEAVY)==" || true)
    if [ -n "$heavy" ]; then
        rm -rf "$ROOT$VENV"
        die "the agent extra pulled in $(echo "$heavy" | tr '\n' ' '): refusing to install"
    fi
    [ -z "$ROOT" ] || relocate_venv
    touch "$ROOT$VENV/.complete"
    CHANGED=yes
    say installed "$VENV (pspe[agent] from $(basename "$WHEEL")${FIND_LINKS:+; dependencies from $FIND_LINKS, no index})"
}

# A venv names its own path in scripts' #! lines and activate files: point them at the final path.
relocate_venv() {
    for f in "$ROOT$VENV"/bin/* "$ROOT$VENV/pyvenv.cfg"; do
        [ -f "$f" ] && [ ! -L "$f" ] && grep -qF "$ROOT$VENV" "$f" 2>/dev/null || continue
        sed -i "s|$ROOT$VENV|$VENV|g" "$f"
    done
    # ensurepip compiled pip and setuptools with the staging path (a package compiles on the host)
    find "$ROOT$VENV/lib" -name __pycache__ -type d -prune -exec rm -rf {} +
}

install_dir() {  # PATH MODE
    if [ -d "$ROOT$1" ]; then
        say unchanged "$1"
    else
        mkdir -p "$ROOT$1"
        chmod "$2" "$ROOT$1"
        say created "$1"
    fi
}

install_config() {
    install_dir "$ETC_DIR" 0755
    if ! cmp -s "$EXAMPLE" "$ROOT$ETC_DIR/agent.toml.example"; then
        cp "$EXAMPLE" "$ROOT$ETC_DIR/agent.toml.example"
        chmod 0644 "$ROOT$ETC_DIR/agent.toml.example"
        say installed "$ETC_DIR/agent.toml.example (every key, for reference)"
    fi
    if [ -e "$ROOT$ETC_DIR/agent.toml" ]; then
        say kept "$ETC_DIR/agent.toml (the operator's; never overwritten)"
    elif [ "$CONFIG" = yes ]; then
        # 0640: it may come to hold the fleet key and broker passwords
        (umask 027 && cp "$EXAMPLE" "$ROOT$ETC_DIR/agent.toml")
        say installed "$ETC_DIR/agent.toml (from agent.example.toml)"
    fi
}

# `pspe-agent config check` with the new venv and no PSPE_* variables, as the service will see it;
# sets STATE_DIR to the effective state dir.
check_config() {
    cfg=$ROOT$ETC_DIR/agent.toml
    [ -e "$cfg" ] || cfg=$ROOT$ETC_DIR/agent.toml.example
    if ! env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$ROOT$VENV/bin/python" -I -B -m agent.cli config check \
            --config "$cfg" >"$TMP/config.json" 2>"$TMP/config.err"; then
        cat "$TMP/config.err" >&2
        die "config check failed for ${cfg#"$ROOT"}: fix it and run again (the active venv is unchanged)"
    fi
    STATE_DIR=$("$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["agent"]["state_dir"])' <"$TMP/config.json")
    say checked "${cfg#"$ROOT"}: config ok"
}

activate_venv() {
    link=$ROOT$PREFIX/venv
    if [ "$(readlink "$link" 2>/dev/null || true)" = "venvs/$ID" ]; then
        say unchanged "$PREFIX/venv -> venvs/$ID"
    else
        previous=$(readlink "$link" 2>/dev/null || true)
        ln -s "venvs/$ID" "$link.new"
        mv -T "$link.new" "$link"   # atomic: a starting agent sees the old venv or the new one
        CHANGED=yes
        say activated "$PREFIX/venv -> venvs/$ID"
    fi
    # keep the active venv and the one before it (a rollback target); drop older ones
    previous=${previous:-$(manifest_get PREVIOUS)}
    for d in "$ROOT$VENVS"/*; do
        [ -d "$d" ] || continue
        name=$(basename "$d")
        [ "venvs/$name" = "venvs/$ID" ] || [ "venvs/$name" = "$previous" ] && continue
        rm -rf "$d"
        say removed "$VENVS/$name (older than the previous one)"
    done
    PREVIOUS=$previous
}

install_unit() {
    sed -e "s|/opt/pspe/venv/|$PREFIX/venv/|g" -e "s|/etc/pspe/agent.toml|$ETC_DIR/agent.toml|g" \
        "$UNIT_SRC" >"$TMP/$UNIT"
    if cmp -s "$TMP/$UNIT" "$ROOT$UNIT_DIR/$UNIT"; then
        say unchanged "$UNIT_DIR/$UNIT"
        return
    fi
    mkdir -p "$ROOT$UNIT_DIR"
    cp "$TMP/$UNIT" "$ROOT$UNIT_DIR/$UNIT"
    chmod 0644 "$ROOT$UNIT_DIR/$UNIT"
    CHANGED=yes UNIT_CHANGED=yes
    say installed "$UNIT_DIR/$UNIT (ExecStart=$PREFIX/venv/bin/pspe-agent --config $ETC_DIR/agent.toml run)"
}

install_bin_link() {
    target=$PREFIX/venv/bin/pspe-agent
    link=$ROOT$BIN_DIR/pspe-agent
    if [ "$(readlink "$link" 2>/dev/null || true)" = "$target" ]; then
        say unchanged "$BIN_DIR/pspe-agent -> $target"
    elif [ -e "$link" ] || [ -L "$link" ]; then
        say skipped "$BIN_DIR/pspe-agent: something else is there; use $target"
    else
        mkdir -p "$ROOT$BIN_DIR"
        ln -s "$target" "$link"
        say linked "$BIN_DIR/pspe-agent -> $target"
    fi
}

write_manifest() {
    {
        echo "# written by install.sh: what --uninstall removes"
        echo "ID=$ID"; echo "PREVIOUS=$PREVIOUS"; echo "ETC_DIR=$ETC_DIR"; echo "UNIT_DIR=$UNIT_DIR"
        echo "BIN_DIR=$BIN_DIR"; echo "STATE_DIR=$STATE_DIR"; echo "UNIT_SHA256=$(sha256 "$ROOT$UNIT_DIR/$UNIT")"
    } >"$MANIFEST.new"
    mv "$MANIFEST.new" "$MANIFEST"
}

start_service() {
    if [ "$ENABLE" = no ]; then
        say "not enabled" "$UNIT (--no-enable)"
    elif [ "$LIVE_SYSTEMD" = yes ]; then
        [ "${UNIT_CHANGED:-no}" = no ] || systemctl daemon-reload
        systemctl -q enable "$UNIT"
        if systemctl -q is-active "$UNIT" && [ "$CHANGED" = yes ]; then
            systemctl restart "$UNIT"   # KillMode=process: the sessions keep running, and are re-adopted
            say restarted "$UNIT"
        elif systemctl -q is-active "$UNIT"; then
            say running "$UNIT"
        else
            systemctl start "$UNIT"
            say started "$UNIT (pspe-agent status; journalctl -u pspe-agent)"
        fi
    elif systemctl_offline enable "$UNIT" 2>/dev/null; then
        say enabled "$UNIT (offline: systemd is not running${ROOT:+ in $ROOT}; it starts at boot)"
    else
        say "not started" "systemd is not running here: run $PREFIX/venv/bin/pspe-agent --config $ETC_DIR/agent.toml run"
    fi
}

uninstall() {
    etc=$(manifest_get ETC_DIR) unit_dir=$(manifest_get UNIT_DIR) bin=$(manifest_get BIN_DIR)
    state=$(manifest_get STATE_DIR) unit_sha=$(manifest_get UNIT_SHA256)
    etc=${etc:-$ETC_DIR} unit_dir=${unit_dir:-$UNIT_DIR} bin=${bin:-$BIN_DIR} state=${state:-/var/lib/pspe}
    if [ "$LIVE_SYSTEMD" = yes ]; then
        systemctl -q disable --now "$UNIT" 2>/dev/null || true
        say stopped "$UNIT"
    else
        systemctl_offline disable "$UNIT" 2>/dev/null || true
    fi
    n=$(ls "$ROOT$state/sessions" 2>/dev/null | grep -c '\.json$' || true)
    [ "$n" = 0 ] || say note "$n session(s) in $state/sessions keep running, no longer right-sized"
    u=$ROOT$unit_dir/$UNIT
    if [ -f "$u" ] && { [ -z "$unit_sha" ] || [ "$(sha256 "$u")" = "$unit_sha" ]; }; then
        rm -f "$u"
        say removed "$unit_dir/$UNIT"
        [ "$LIVE_SYSTEMD" = no ] || systemctl daemon-reload
    elif [ -f "$u" ]; then
        say kept "$unit_dir/$UNIT (edited since install)"
    fi
    if [ "$(readlink "$ROOT$bin/pspe-agent" 2>/dev/null || true)" = "$PREFIX/venv/bin/pspe-agent" ]; then
        rm -f "$ROOT$bin/pspe-agent"
        say removed "$bin/pspe-agent"
    fi
    if [ -d "$ROOT$PREFIX" ]; then
        rm -rf "$ROOT$PREFIX/venvs" "$ROOT$PREFIX/venv" "$MANIFEST"
        rmdir "$ROOT$PREFIX" 2>/dev/null || true
        say removed "$PREFIX/venv and $PREFIX/venvs"
    fi
    if [ "$PURGE" = yes ]; then
        rm -rf "$ROOT$etc" "$ROOT$state"
        say purged "$etc and $state"
    else
        rm -f "$ROOT$etc/agent.toml.example"
        [ ! -d "$ROOT$etc" ] || say kept "$etc (config; --purge removes it)"
        [ ! -d "$ROOT$state" ] || say kept "$state (session records and profiles; --purge removes it)"
    fi
}
