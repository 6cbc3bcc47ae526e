"""The host release, end to end: package.sh builds it, install.sh installs it with the real pip.

One offline release (the wheel plus the agent extra's wheels) is built per test session, from a
snapshot of the source tree (edits made meanwhile cannot split it from the source-tree install), and
installed once into a staged root (--root, as DESTDIR). Installed files name the final paths
(/opt/pspe/...), so the staged tree is relocatable: each test that changes it works on its own copy.
The installed agent runs through the staged venv's python, since its #! names /opt/pspe.
"""

import base64
import configparser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
HEAVY = {"torch", "lightning", "pytorch-lightning", "mlflow", "mlflow-skinny", "apache-airflow"}
VENV = "opt/pspe/venv"
UNIT = "etc/systemd/system/pspe-agent.service"


def sh(*argv, check=True, env=None, cwd="/"):
    """Run a command outside the source tree (so `python -m` cannot import the repo's agent/)."""
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSPE_")}
    env.update(extra)
    return env


@dataclass
class Release:
    wheel: Path
    tarball: Path
    dir: Path        # the unpacked tarball

    @property
    def wheels(self) -> Path:
        return self.dir / "wheels"


@dataclass
class Staged:
    root: Path
    out: str


@pytest.fixture(scope="session")
def source(tmp_path_factory) -> Path:
    """What package.sh and a source-tree install read, copied once."""
    snap = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "agent", "profiles", "training", "deploy"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, snap / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, snap / name)
    return snap


@pytest.fixture(scope="session")
def release(source, tmp_path_factory) -> Release:
    out = tmp_path_factory.mktemp("dist")
    package = source / "deploy/host/package.sh"
    lines = sh("sh", package, "--out", out, "--python", sys.executable, "--offline").stdout.split()
    wheel, tarball = Path(lines[-2]), Path(lines[-1])
    unpacked = tmp_path_factory.mktemp("release")
    with tarfile.open(tarball) as t:
        t.extractall(unpacked, filter="data")
    return Release(wheel, tarball, unpacked / tarball.name.removesuffix(".tar.gz"))


def no_index_env():
    """No pip configuration and no index: the release's wheels/ must be enough."""
    env = {k: v for k, v in clean_env().items() if not k.startswith("PIP_")}
    return dict(env, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple")


def install(release: Release, root: Path, *args, check=True, **kw):
    return sh(release.dir / "install.sh", "--root", root, "--python", HOST_PYTHON, *args, check=check,
              env=no_index_env(), **kw)


@pytest.fixture(scope="session")
def staged(release, tmp_path_factory) -> Staged:
    root = tmp_path_factory.mktemp("staged") / "root"
    return Staged(root, install(release, root).stdout)


@pytest.fixture
def root(staged, tmp_path) -> Path:
    """A private copy of the staged install."""
    copy = tmp_path / "root"
    sh("cp", "-a", staged.root, copy)
    return copy


def agent(root: Path, *args, env=None, check=True):
    """The installed pspe-agent entry point, run by the staged venv's python."""
    return sh(root / VENV / "bin/python", root / VENV / "bin/pspe-agent", *args, env=env or clean_env(),
              check=check)


def venv_id(root: Path) -> str:
    return os.readlink(root / VENV).removeprefix("venvs/")


def words(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def variant_wheel(wheel: Path, dest: Path) -> Path:
    """The same wheel with one more file: same version, other content (an upgrade install.sh must see)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / wheel.name
    extra = b"built for test_host_install\n"
    digest = base64.urlsafe_b64encode(hashlib.sha256(extra).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data += f"agent/host_test_marker.txt,sha256={digest},{len(extra)}\n".encode()
            dst.writestr(item, data)
        dst.writestr("agent/host_test_marker.txt", extra)
    return out


# -- the release -------------------------------------------------------------------------------------

def test_release_tarball_holds_the_installer_the_wheel_and_its_dependencies(release):
    names = {p.name for p in release.dir.iterdir()}
    assert {"install.sh", "install-lib.sh", "pspe-agent.service", "agent.example.toml", "README",
            release.wheel.name} <= names
    deps = {p.name.split("-")[0].lower() for p in release.wheels.glob("*.whl")}
    assert {"numpy", "msgspec", "prometheus_client", "onnxruntime"} <= deps
    assert "pspe" not in deps and not deps & {h.replace("-", "_") for h in HEAVY}
    with zipfile.ZipFile(release.wheel) as z:
        meta = z.read("pspe-0.1.0.dist-info/METADATA").decode()
        assert "agent/models/forecaster.npz" in z.namelist()
        assert "pspe-agent = agent.cli:main" in z.read("pspe-0.1.0.dist-info/entry_points.txt").decode()
    agent_reqs = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra == \"agent\"" in line]
    assert agent_reqs and not [r for r in agent_reqs if r.split()[1].split("=")[0].split(">")[0].lower() in HEAVY]


# -- a fresh install ---------------------------------------------------------------------------------

def test_install_lays_out_venv_config_state_unit_and_link(release, staged):
    root, vid = staged.root, venv_id(staged.root)
    assert vid.startswith("0.1.0-") and (root / "opt/pspe/venvs" / vid / ".complete").exists()
    config = root / "etc/pspe/agent.toml"
    assert config.read_text() == (REPO / "deploy/agent.example.toml").read_text()
    assert config.stat().st_mode & 0o777 == 0o640, "it may come to hold the fleet key"
    assert (root / "etc/pspe/agent.toml.example").exists() and (root / "var/lib/pspe").is_dir()
    assert os.readlink(root / "usr/local/bin/pspe-agent") == "/opt/pspe/venv/bin/pspe-agent"
    manifest = (root / "opt/pspe/install.conf").read_text()
    assert f"ID={vid}" in manifest and "STATE_DIR=/var/lib/pspe" in manifest
    # scripts name the final paths, never the staging root
    assert (root / VENV / "bin/pspe-agent").read_text().startswith(f"#!/opt/pspe/venvs/{vid}/bin/python")
    for f in [*(root / VENV / "bin").iterdir(), root / VENV / "pyvenv.cfg"]:
        if f.is_file() and not f.is_symlink():
            assert str(root) not in f.read_text(errors="replace"), f"{f} names the staging root"
    assert f"dependencies from {release.wheels}, no index" in staged.out
    said = words(staged.out)
    assert said.count("installed") == 4 and "activated" in said and "linked" in said
    if shutil.which("systemctl"):
        assert (root / "etc/systemd/system/multi-user.target.wants/pspe-agent.service").is_symlink()


def test_venv_holds_only_the_agent_extra(staged):
    listed = json.loads(sh(staged.root / VENV / "bin/python", "-m", "pip", "list", "--format=json").stdout)
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert {"pspe", "numpy", "msgspec", "prometheus-client"} <= names
    assert not names & HEAVY, f"heavy packages in the host venv: {names & HEAVY}"
    found = sh(staged.root / VENV / "bin/python", "-I", "-c",
               "import importlib.util as u; print([m for m in ('torch', 'mlflow', 'airflow', 'lightning')"
               " if u.find_spec(m)])").stdout.strip()
    assert found == "[]"


def test_unit_starts_the_installed_agent_and_spares_sessions(staged, tmp_path):
    text = (staged.root / UNIT).read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(text)
    service = unit["Service"]
    assert service["ExecStart"] == "/opt/pspe/venv/bin/pspe-agent --config /etc/pspe/agent.toml run"
    assert service["KillMode"] == "process" and service["Restart"] == "always"
    assert service["RestartPreventExitStatus"] == "2"
    # namespaces and flags would be inherited by the sessions the agent starts
    for option in ("PrivateTmp", "ProtectHome", "NoNewPrivileges", "ProtectSystem", "OOMScoreAdjust"):
        assert option not in service
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify checks that ExecStart exists: point it at the staged venv
    (tmp_path / "pspe-agent.service").write_text(text.replace("/opt/pspe/", f"{staged.root}/opt/pspe/"))
    r = sh("systemd-analyze", "verify", "--man=no", tmp_path / "pspe-agent.service", check=False)
    assert r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "", r.stderr


# -- the installed agent -------------------------------------------------------------------------------

def test_installed_agent_checks_its_config_and_runs_a_session(staged, tmp_path, v1_cgroup_parent):
    root = staged.root
    config = root / "etc/pspe/agent.toml"
    assert agent(root, "version").stdout.strip() == "pspe-agent 0.1.0"
    checked = json.loads(agent(root, "config", "check", "--config", config).stdout)
    assert checked["agent"]["state_dir"] == "/var/lib/pspe"
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\nbogus = 1\n")
    r = agent(root, "config", "check", "--config", bad, check=False)
    assert r.returncode == 2 and "bogus" in r.stderr, "2: the exit status the unit does not restart on"

    env = clean_env(PSPE_AGENT_STATE_DIR=str(tmp_path / "state"), PSPE_HTTP_LISTEN="",
                    PSPE_AGENT_SESSION_PARENT=v1_cgroup_parent)
    agent(root, "session", "start", "--name", "sleeper", "--config", config, "--", "sleep", "120", env=env)
    status = json.loads(agent(root, "run", "--once", "--dry-run", "--config", config, "--log-level", "warning",
                              env=env).stdout)
    assert status["backend"].startswith("dry-run")
    assert status["forecaster"].startswith("onnx:") and "numpy" in status["forecaster"]
    assert f"{root}/{VENV}/lib/" in status["forecaster"], "the bundled model from the installed package"
    (session,) = [s for s in status["sessions"] if s["session_id"] == "sleeper"]
    assert session["limits"] is not None
    agent(root, "session", "stop", "sleeper", "--config", config, env=env)
    assert json.loads(agent(root, "sessions", "--json", "--config", config, env=env).stdout) == []


def _tracking_hierarchies() -> list[tuple[str, str]]:
    """(mount point, /proc/PID/cgroup key) of the hierarchies systemd tracks a unit's processes in
    beside the controllers: name=systemd on v1 and hybrid hosts, and the unified one on hybrid."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, mnt, fstype, opts = line.split()[:4]
        if fstype == "cgroup" and "name=systemd" in opts.split(","):
            found.append((mnt, "name=systemd"))
        elif fstype == "cgroup2" and mnt != "/sys/fs/cgroup" and Path("/sys/fs/cgroup/cpu").is_dir():
            found.append((mnt, ""))
    return found


def test_v1_session_stays_in_its_starters_systemd_cgroup_so_the_unit_needs_killmode_process(
        staged, tmp_path, v1_cgroup_parent):
    """What KillMode=process rests on: on a v1/hybrid host a session joins the controllers' cgroups
    but stays in the systemd-tracked cgroup of whoever started it (the agent's unit, for fleet
    commands), where KillMode=control-group or mixed would kill it with the agent."""
    tracking = _tracking_hierarchies()
    if not tracking:
        pytest.skip("no name=systemd or hybrid unified hierarchy mounted here (cgroup v2 only)")
    unit_cg = f"pspe-fake-unit-{v1_cgroup_parent}"
    for mnt, _ in tracking:
        os.mkdir(f"{mnt}/{unit_cg}")
    root = staged.root
    env = clean_env(PSPE_AGENT_STATE_DIR=str(tmp_path / "state"), PSPE_HTTP_LISTEN="",
                    PSPE_AGENT_SESSION_PARENT=v1_cgroup_parent)
    config = root / "etc/pspe/agent.toml"
    join = "; ".join(f'echo $$ > "{mnt}/{unit_cg}/cgroup.procs"' for mnt, _ in tracking)
    try:
        sh("sh", "-c", f'{join}; exec "$@"', "-", root / VENV / "bin/python", root / VENV / "bin/pspe-agent",
           "session", "start", "--name", "held", "--config", config, "--", "sleep", "120", env=env)
        (rec,) = json.loads(agent(root, "sessions", "--json", "--config", config, env=env).stdout)
        where = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{rec['pid']}/cgroup").read_text().splitlines())
        assert where["cpu"] == f"/{v1_cgroup_parent}/held"
        for _, key in tracking:
            assert where[key] == f"/{unit_cg}", f"{key}: {where[key]}"
    finally:
        agent(root, "session", "stop", "held", "--config", config, env=env, check=False)
        for mnt, _ in tracking:
            os.rmdir(f"{mnt}/{unit_cg}")


# -- again, upgrade, uninstall -------------------------------------------------------------------------

def test_second_install_changes_nothing_and_keeps_a_modified_config(release, root):
    config = root / "etc/pspe/agent.toml"
    edited = config.read_text().replace("tick_seconds = 1.0", "tick_seconds = 2.0") + "# edited by the operator\n"
    config.write_text(edited)
    unit_mtime = (root / UNIT).stat().st_mtime_ns
    vid = venv_id(root)
    r = install(release, root)
    assert set(words(r.stdout)) <= {"unchanged", "kept", "checked", "enabled", "pspe-agent"}, r.stdout
    assert config.read_text() == edited
    assert (root / UNIT).stat().st_mtime_ns == unit_mtime
    assert venv_id(root) == vid and [p.name for p in (root / "opt/pspe/venvs").iterdir()] == [vid]


def test_upgrade_waits_for_a_valid_config_then_switches_and_keeps_the_previous_venv(release, root, tmp_path):
    old = venv_id(root)
    (root / "opt/pspe/venvs/0.0.9-000000000000").mkdir()   # an older one, past the rollback target
    config = root / "etc/pspe/agent.toml"
    good = config.read_text()
    config.write_text(good + "\n[anomaly]\nbogus = 1\n")
    wheel2 = variant_wheel(release.wheel, tmp_path / "wheel2")

    r = install(release, root, "--wheel", wheel2, check=False)
    assert r.returncode != 0 and "bogus" in r.stderr and "active venv is unchanged" in r.stderr
    assert venv_id(root) == old, "a bad config must not switch the running venv"

    config.write_text(good)
    r = install(release, root, "--wheel", wheel2)
    new = venv_id(root)
    assert new != old and new.startswith("0.1.0-") and "activated" in words(r.stdout)
    assert sorted(p.name for p in (root / "opt/pspe/venvs").iterdir()) == sorted([old, new])
    assert f"PREVIOUS=venvs/{old}" in (root / "opt/pspe/install.conf").read_text()
    assert (root / VENV / "lib/python3.11/site-packages/agent/host_test_marker.txt").exists()
    assert config.read_text() == good


def test_uninstall_keeps_config_and_state_and_purge_removes_them(release, root):
    (root / "var/lib/pspe/sessions").mkdir()
    (root / "var/lib/pspe/sessions/web-1.json").write_text("{}")
    r = install(release, root, "--uninstall")
    assert "1 session(s)" in r.stdout
    assert not (root / "opt/pspe").exists() and not (root / UNIT).exists()
    assert not (root / "usr/local/bin/pspe-agent").is_symlink()
    assert not (root / "etc/systemd/system/multi-user.target.wants/pspe-agent.service").is_symlink()
    assert sorted(p.name for p in (root / "etc/pspe").iterdir()) == ["agent.toml"]
    assert (root / "var/lib/pspe/sessions/web-1.json").exists()

    install(release, root, "--uninstall", "--purge")
    assert not (root / "etc/pspe").exists() and not (root / "var/lib/pspe").exists()


def test_uninstall_keeps_a_unit_edited_since_install(release, root):
    (root / UNIT).write_text((root / UNIT).read_text().replace("RestartSec=2", "RestartSec=5"))
    r = install(release, root, "--uninstall")
    assert "edited since install" in r.stdout and (root / UNIT).exists()
    assert not (root / "opt/pspe").exists()


def test_source_tree_install_in_place_runs_the_entry_point_directly(source, release, tmp_path):
    """No --root: the paths are real, so the scripts' #! lines work as they will on a host."""
    d = {name: tmp_path / name for name in ("opt", "etc", "units", "bin", "state")}
    d["etc"].mkdir()
    config = d["etc"] / "agent.toml"   # an operator's config is there before the first install
    config.write_text(f'[agent]\nstate_dir = "{d["state"]}"\n[http]\nlisten = ""\n')
    r = sh(source / "deploy/host/install.sh", "--python", HOST_PYTHON, "--find-links", release.wheels,
           "--prefix", d["opt"], "--etc-dir", d["etc"], "--unit-dir", d["units"], "--bin-dir", d["bin"],
           "--no-enable", env=clean_env())
    said = words(r.stdout)
    assert said[0] == "building" and "kept" in said and said.count("not") == 1, r.stdout
    assert config.read_text().startswith("[agent]") and d["state"].is_dir()
    cli = d["bin"] / "pspe-agent"
    assert sh(cli, "version").stdout.strip() == "pspe-agent 0.1.0"
    assert json.loads(sh(cli, "config", "check", "--config", config).stdout)["agent"]["state_dir"] == str(d["state"])
    assert list((d["opt"] / "venv/lib").glob("python3*/site-packages/agent/__pycache__/cli.*.pyc")), \
        "compiled in place"
    unit = d["units"] / "pspe-agent.service"
    assert f"ExecStart={d['opt']}/venv/bin/pspe-agent --config {config} run" in unit.read_text()
    if shutil.which("systemd-analyze"):
        v = sh("systemd-analyze", "verify", "--man=no", unit, check=False)
        assert v.returncode == 0 and v.stderr.strip() == "", v.stderr
    sh(source / "deploy/host/install.sh", "--uninstall", "--prefix", d["opt"], env=clean_env())
    assert not d["opt"].exists() and not unit.exists() and not cli.is_symlink() and config.exists()


def test_install_id_follows_the_wheels_content_not_its_zip_timestamps(source, release, tmp_path):
    rezipped = tmp_path / release.wheel.name
    with zipfile.ZipFile(release.wheel) as src, zipfile.ZipFile(rezipped, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            item.date_time = (2001, 2, 3, 4, 5, 6)
            dst.writestr(item, src.read(item))
    assert release.wheel.read_bytes() != rezipped.read_bytes()

    def wheel_id(wheel):
        return sh("sh", "-c", '. "$1"; PYTHON=$2; wheel_id "$3"', "-", source / "deploy/host/install-lib.sh",
                  sys.executable, wheel).stdout.strip()
    assert wheel_id(rezipped) == wheel_id(release.wheel)
    assert wheel_id(variant_wheel(release.wheel, tmp_path / "v")) != wheel_id(release.wheel)


# -- the Debian package ----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed here")
def test_deb_ships_the_same_layout_with_the_config_as_a_conffile(source, release, tmp_path):
    deb = Path(sh(source / "deploy/host/build-deb.sh", "--wheel", release.wheel, "--find-links", release.wheels,
                  "--python", HOST_PYTHON, "--out", tmp_path / "out", "--compress", "none",
                  env=no_index_env()).stdout.split()[-1])
    field = lambda name: sh("dpkg-deb", "-f", deb, name).stdout.strip()  # noqa: E731
    assert (field("Package"), field("Version")) == ("pspe-agent", "0.1.0")
    assert field("Depends") == os.path.basename(os.path.realpath(HOST_PYTHON))
    assert sh("dpkg-deb", "-I", deb, "conffiles").stdout.split() == ["/etc/pspe/agent.toml"]
    x = tmp_path / "x"
    sh("dpkg-deb", "-x", deb, x)
    assert os.readlink(x / "usr/bin/pspe-agent") == "/opt/pspe/venv/bin/pspe-agent"
    assert "ExecStart=/opt/pspe/venv/bin/pspe-agent --config /etc/pspe/agent.toml run" in \
        (x / "lib/systemd/system/pspe-agent.service").read_text()
    assert not (x / "opt/pspe/install.conf").exists() and not (x / "usr/local").exists()
    assert agent(x, "version").stdout.strip() == "pspe-agent 0.1.0"
    agent(x, "config", "check", "--config", x / "etc/pspe/agent.toml")
    # no .pyc naming the staging dir: postinst compiles on the host, prerm removes them
    assert not list((x / "opt/pspe").rglob("__pycache__"))
    control = tmp_path / "control"
    sh("dpkg-deb", "-e", deb, control)
    for script in ("postinst", "prerm", "postrm"):
        sh("sh", "-n", control / script)
    assert "compileall" in (control / "postinst").read_text() and "__pycache__" in (control / "prerm").read_text()
