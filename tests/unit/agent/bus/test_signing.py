"""HMAC signatures on command bodies: tamper, key, age and format checks."""

import pytest

from agent.bus import signing as s

KEY = s.fleet_key("fleet-secret-0123456789")
BODY = b"\x81\xa4kind\xa4stop"


def test_a_signature_verifies_and_returns_its_stamp():
    header = s.sign(BODY, KEY, now=1000.7)
    assert header.startswith("t=1000,v1=")
    assert s.verify(BODY, header, KEY, now=1010.0) == 1000
    assert s.verify(BODY, header.encode(), KEY, now=1010.0) == 1000


@pytest.mark.parametrize("body,key", [(BODY + b"x", KEY), (BODY, s.fleet_key("another-fleet-key-000"))])
def test_a_changed_body_or_another_key_is_a_mismatch(body, key):
    with pytest.raises(s.BadSignature):
        s.verify(body, s.sign(BODY, KEY, 1000.0), key, now=1000.0)


def test_the_timestamp_cannot_be_moved_without_the_key():
    header = s.sign(BODY, KEY, 1000.0)
    forged = header.replace("t=1000", "t=2000")
    with pytest.raises(s.BadSignature):
        s.verify(BODY, forged, KEY, now=2000.0)


def test_old_and_future_signatures_are_stale():
    header = s.sign(BODY, KEY, 1000.0)
    assert s.verify(BODY, header, KEY, now=1300.0, max_age_s=300) == 1000
    with pytest.raises(s.StaleSignature):
        s.verify(BODY, header, KEY, now=1301.0, max_age_s=300)
    with pytest.raises(s.StaleSignature):
        s.verify(BODY, header, KEY, now=900.0, max_skew_s=30)


@pytest.mark.parametrize("header,err", [(None, s.MissingSignature), ("", s.MissingSignature),
                                        ("v1=abc", s.MalformedSignature), ("t=x,v1=" + "0" * 64, s.MalformedSignature),
                                        (b"\xff\xfe", s.MalformedSignature), ("t=1000,v1=" + "0" * 64, s.BadSignature)])
def test_missing_or_malformed_headers_are_refused_with_a_reason(header, err):
    with pytest.raises(err) as e:
        s.verify(BODY, header, KEY, now=1000.0)
    assert isinstance(e.value, s.SignatureError) and e.value.reason


def test_short_keys_are_refused():
    with pytest.raises(ValueError):
        s.fleet_key("short")
