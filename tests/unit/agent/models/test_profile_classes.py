"""The host's cache of profile classes: verified with the fleet key, refused artefacts leave it as it was."""

import json

import pytest

from agent.bus.signing import sign
from agent.models.profile_classes import ProfileClassesCache, ProfileClassesRejected
from tests.unit.agent.policy.test_seed import WEB, classes_of

KEY = b"k" * 32
NOW = 1_800_000_000.0


def body_of(version):
    d = classes_of(WEB).to_dict()
    d["version"] = version
    return json.dumps(d).encode()


def test_a_signed_artefact_is_installed_and_read_back(tmp_path):
    cache = ProfileClassesCache(tmp_path, KEY)
    body = body_of(3)
    installed = cache.install(body, sign(body, KEY, NOW), NOW)
    assert installed.version == 3 and cache.load(NOW + 86400) == installed
    assert ProfileClassesCache(tmp_path, KEY).load(NOW) == installed     # from disk, as after a restart


@pytest.mark.parametrize("tamper, why", [
    (lambda body: (body, sign(body, b"x" * 32, NOW)), "mismatch"),
    (lambda body: (body + b" ", sign(body, KEY, NOW)), "mismatch"),
    (lambda body: (b'{"format": "other"}', sign(b'{"format": "other"}', KEY, NOW)), "not usable"),
    (lambda body: (b"not json", sign(b"not json", KEY, NOW)), "not usable"),
    (lambda body: (body, sign(body, KEY, NOW - 31 * 86400)), "stale|expired|ago"),
])
def test_a_bad_artefact_is_refused_and_the_cached_one_kept(tmp_path, tamper, why):
    cache = ProfileClassesCache(tmp_path, KEY)
    good = body_of(3)
    cache.install(good, sign(good, KEY, NOW), NOW)
    body, signature = tamper(body_of(4))
    with pytest.raises(ProfileClassesRejected, match=why):
        cache.install(body, signature, NOW)
    assert cache.load(NOW).version == 3


def test_an_older_version_does_not_replace_a_newer_one(tmp_path):
    cache = ProfileClassesCache(tmp_path, KEY)
    new, old = body_of(9), body_of(8)
    cache.install(new, sign(new, KEY, NOW), NOW)
    with pytest.raises(ProfileClassesRejected, match="older than the cached 9"):
        cache.install(old, sign(old, KEY, NOW), NOW)


def test_without_a_fleet_key_nothing_is_installed_or_used(tmp_path):
    body = body_of(1)
    ProfileClassesCache(tmp_path, KEY).install(body, sign(body, KEY, NOW), NOW)
    keyless = ProfileClassesCache(tmp_path, None)
    assert keyless.load(NOW) is None
    with pytest.raises(ProfileClassesRejected, match="no fleet key"):
        keyless.install(body, sign(body, KEY, NOW), NOW)


def test_an_expired_cache_is_not_used_and_a_damaged_one_is_ignored(tmp_path):
    cache = ProfileClassesCache(tmp_path, KEY)
    body = body_of(1)
    cache.install(body, sign(body, KEY, NOW), NOW)
    assert cache.load(NOW + 31 * 86400) is None
    cache.path.write_text("{")
    assert cache.load(NOW) is None
