"""Container sessions on Docker's side and in the session store, against a fake low-level API."""

from types import SimpleNamespace

import pytest

from agent.config import build_config
from agent.actuate.docker_client import DockerConnection, DockerUnavailable, docker_configured
from agent.sessions.containers import ContainerSpec, DockerSessions, create_limits, parse_spec
from agent.sessions.container_watch import adopt_once, docker_specs
from agent.sessions.lifecycle import SessionManager
from agent.sessions.adoption import adopted_id
from agent.policy.limits import MIB, Limits
from agent.sessions.store import Session, SessionError, SessionStore
from tests.unit.agent.docker_fakes import FakeError, SpyFiles, not_found

A, B = "a" * 64, "b" * 64


class Api:
    """Just enough of docker.APIClient for DockerSessions."""

    def __init__(self, tmp_path):
        self.proc = tmp_path / "proc"
        self.attrs: dict[str, dict] = {}
        self.removed: list[str] = []
        self.stopped: list[tuple[str, int]] = []
        self.listed_with: list[dict] = []
        self.driver = "cgroupfs"

    def running(self, cid, name, pid, labels=None, image="img:1", cgroup_line=True):
        self.attrs[cid] = {"Id": cid, "Name": "/" + name, "State": {"Running": True, "Pid": pid, "Status": "running"},
                           "Config": {"Image": image, "Labels": labels or {}}, "HostConfig": {"CgroupParent": ""}}
        if cgroup_line:
            (self.proc / str(pid)).mkdir(parents=True)
            (self.proc / str(pid) / "cgroup").write_text(f"1:cpu:/docker/{cid}\n4:memory:/docker/{cid}\n")

    def exited(self, cid, code, oom=False):
        self.attrs[cid]["State"] = {"Running": False, "Pid": 0, "Status": "exited", "ExitCode": code,
                                    "OOMKilled": oom}

    def info(self):
        return {"CgroupDriver": self.driver}

    def inspect_container(self, cid):
        if cid not in self.attrs:
            raise not_found(cid)
        return self.attrs[cid]

    def containers(self, filters):
        self.listed_with.append(filters)
        wanted = filters.get("label", [])
        out = []
        for cid, a in self.attrs.items():
            labels = a["Config"]["Labels"]
            if a["State"]["Running"] and all(
                    (w.partition("=")[0] in labels and (not w.partition("=")[2] or labels[w.partition("=")[0]] ==
                                                        w.partition("=")[2])) for w in wanted):
                out.append({"Id": cid, "Names": [a["Name"]]})
        return out

    def stop(self, cid, timeout):
        self.stopped.append((cid, timeout))
        if cid not in self.attrs:
            raise not_found(cid)

    def remove_container(self, cid, force):
        self.removed.append(cid)
        self.attrs.pop(cid, None)


@pytest.fixture
def api(tmp_path):
    return Api(tmp_path)


@pytest.fixture
def docker(api):
    return DockerSessions(DockerConnection(lambda: SimpleNamespace(api=api)), procfs_root=str(api.proc))


@pytest.fixture
def manager(tmp_path, docker, api):
    files = SpyFiles([])
    cfg = build_config({"agent": {"state_dir": str(tmp_path / "state")}}, {})
    m = SessionManager(files, SessionStore(cfg.state_dir), cfg, docker=docker)
    m.files = files
    return m


def _cgroup(m, cid, limits=Limits(0.5, 0.5, 64 * MIB, 128 * MIB)):
    m.files.create(f"docker/{cid}")
    m.files.cgroups[f"docker/{cid}"].limits = limits


# -- specs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, parsed", [
    ("docker:label=pspe.session=1", ContainerSpec(("pspe.session=1",), "")),
    ("docker:label=team", ContainerSpec(("team",), "")),
    ("docker:name=web-", ContainerSpec((), "web-")),
    (" docker:label=a=b, name=web- ", ContainerSpec(("a=b",), "web-")),
])
def test_parse_spec(spec, parsed):
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["docker:", "docker:image=x", "docker:label=", "pspe/*", "docker:name"])
def test_bad_specs_name_themselves(spec):
    with pytest.raises(SessionError, match="spec"):
        parse_spec(spec)


def test_docker_specs_are_picked_from_the_adopt_list():
    assert docker_specs(["docker/*", "docker:label=x", "pspe/a"]) == ["docker:label=x"]


def test_create_limits_match_what_update_sends():
    assert create_limits(Limits(0.2, 0.2, 64 * MIB, 64 * MIB)) == {
        "cpu_shares": 205, "cpu_period": 100_000, "cpu_quota": 20_000,
        "mem_limit": 64 * MIB, "memswap_limit": 64 * MIB, "mem_reservation": 64 * MIB}


# -- Docker's side --------------------------------------------------------------------------------
def test_find_reads_each_new_containers_cgroup_from_its_init(docker, api):
    api.running(A, "web-1", 101, {"team": "a"})
    api.running(B, "db-1", 102, {"team": "a"})
    found = docker.find(ContainerSpec(("team=a",), "web-"))
    assert [(i.id, i.name, i.cgroup, i.pid, i.labels) for i in found] == [(A, "web-1", f"docker/{A}", 101, {"team": "a"})]
    assert docker.find(ContainerSpec(("team=a",), ""), known_ids={A})[0] == A, "known ones are not inspected again"
    assert api.listed_with[-1] == {"status": "running", "label": ["team=a"]}


def test_without_a_readable_init_the_drivers_rule_names_the_cgroup(docker, api):
    api.running(A, "web-1", 101, cgroup_line=False)
    api.driver = "systemd"
    [info] = docker.find(ContainerSpec((), "web"))
    assert info.cgroup == f"system.slice/docker-{A}.scope"


def test_exit_state_and_a_removed_container(docker, api):
    api.running(A, "w", 101)
    api.exited(A, 137, oom=True)
    assert docker.exit_state(A) == {"status": "exited", "exit_code": 137, "oom_killed": True}
    assert docker.exit_state(B) is None


def test_daemon_errors_other_than_404_are_unavailable(docker, api):
    def broken(cid):
        raise FakeError(500, "daemon is shutting down")
    api.inspect_container = broken
    with pytest.raises(DockerUnavailable, match="shutting down"):
        docker.inspect(A)


def test_connection_is_made_once_and_only_on_use():
    made = []
    conn = DockerConnection(lambda: made.append(1) or SimpleNamespace(close=lambda: None))
    assert made == []
    assert conn.client is conn.client and made == [1]
    conn.reset()
    conn.client
    assert made == [1, 1]


def test_docker_configured_by_env_or_socket(tmp_path):
    assert docker_configured({"DOCKER_HOST": "unix:///x"}, str(tmp_path / "none"))
    assert not docker_configured({}, str(tmp_path / "none"))
    (tmp_path / "docker.sock").touch()
    assert docker_configured({}, str(tmp_path / "docker.sock"))


# -- the manager's side ---------------------------------------------------------------------------
def test_adopt_by_spec_is_idempotent_and_keeps_non_pspe_labels(manager, api):
    api.running(A, "web-1", 101, {"pspe.session": "1", "app": "web"})
    _cgroup(manager, A)
    [s] = manager.adopt("docker:label=pspe.session=1", now=5.0)
    assert (s.session_id, s.cgroup, s.container, s.owned, s.labels) == ("web-1", f"docker/{A}", A, False, {"app": "web"})
    assert s.limits == Limits(0.5, 0.5, 64 * MIB, 128 * MIB), "read, never written"
    assert manager.adopt("docker:label=pspe.session=1", now=6.0)[0].started_at == 5.0
    assert manager.store.get("web-1").container == A and manager.files.events == []


def test_reap_says_how_a_container_ended_and_removes_only_ours(manager, api):
    for cid, name, owned in ((A, "ours", True), (B, "theirs", False)):
        api.running(cid, name, 0, cgroup_line=False)
        api.exited(cid, 3)
        manager.store.save(Session(name, f"docker/{cid}", owned, 1.0, container=cid, image="img:1"))
    assert sorted(manager.reap(now=9.0)) == ["ours", "theirs"]
    assert manager.store.ended("ours")["reason"] == "container exited" and manager.store.ended("ours")["exit_code"] == 3
    assert api.removed == [A], "an adopted container is not ours to remove"
    manager.store.save(Session("gone", f"docker/{B}", True, 1.0, container="c" * 64))
    manager.reap(now=10.0)
    assert manager.store.ended("gone")["reason"] == "container removed"


def test_a_running_container_with_an_empty_cgroup_is_left_to_docker(manager, api):
    api.running(A, "w", 101)
    _cgroup(manager, A)
    manager.store.save(Session("w", f"docker/{A}", True, 1.0, container=A))
    assert manager.reap(now=2.0) == [] and manager.store.get("w") is not None


def test_stop_owned_removes_adopted_is_forgotten_or_stopped_with_force(manager, api):
    api.running(A, "ours", 101)
    api.running(B, "theirs", 102)
    manager.store.save(Session("ours", f"docker/{A}", True, 1.0, container=A))
    manager.store.save(Session("theirs", f"docker/{B}", False, 1.0, container=B))
    assert manager.stop("ours", now=3.0, grace_seconds=2)["reason"] == "stopped"
    assert api.stopped == [(A, 2)] and api.removed == [A]
    assert manager.stop("theirs", now=3.0)["reason"] == "forgotten" and api.stopped == [(A, 2)]
    manager.store.save(Session("theirs", f"docker/{B}", False, 1.0, container=B))
    manager.stop("theirs", now=4.0, grace_seconds=0, force=True)
    assert api.stopped[-1] == (B, 0) and api.removed == [A]


def test_watch_round_collects_errors_instead_of_raising(manager, api):
    api.running(A, "web-1", 101, {"pspe.session": "1"})
    _cgroup(manager, A)
    ids, errors = adopt_once(manager, ["docker:label=pspe.session=1", "docker:bogus"], now=1.0)
    assert ids == {"web-1"} and len(errors) == 1 and "docker:bogus" in errors[0]


def test_adopted_ids_come_from_container_names_and_stay_unique():
    assert adopted_id(f"docker/{A}", {}, name="web-1") == "web-1"
    other = adopted_id(f"docker/{B}", {"web-1": f"docker/{A}"}, name="web-1")
    assert other.startswith("web-1-") and other != "web-1"


def test_session_records_keep_the_container_and_read_old_records(tmp_path):
    store = SessionStore(tmp_path)
    store.save(Session("c", f"docker/{A}", True, 1.0, container=A, image="img:1"))
    assert (store.get("c").container, store.get("c").image) == (A, "img:1")
    legacy = Session("p", "pspe/p", True, 1.0).to_dict()
    del legacy["container"], legacy["image"]
    assert Session.from_dict(legacy).container is None


def test_a_container_restarting_under_its_policy_is_not_removed(manager, api):
    api.running(A, "ours", 101)
    api.attrs[A]["State"]["Status"] = "restarting"
    manager.store.save(Session("ours", f"docker/{A}", True, 1.0, container=A))  # its cgroup is gone meanwhile
    assert manager.reap(now=2.0) == ["ours"]
    assert manager.store.ended("ours")["reason"] == "container restarting" and api.removed == []


def test_the_agent_imports_no_docker_sdk_until_a_container_shows_up():
    import subprocess
    import sys

    code = ("import sys, agent.main, agent.cli, agent.sessions.lifecycle, agent.actuate.docker, agent.sessions.container_watch; "
            "print('docker' in sys.modules, 'requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
