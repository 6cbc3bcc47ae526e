"""HMAC-SHA256 signatures on command bodies with a per-fleet key (pure; time passed in).

The signature travels beside the body (AMQP header `x-pspe-signature`) as
`t=<unix seconds>,v1=<hex>`, the scheme webhook senders use: the MAC covers
`b"<t>." + body`, so the timestamp cannot be swapped without the key, and a
verifier refuses signatures older than `max_age_s` (or further than
`max_skew_s` in the future) to bound replays. Replays inside that window are
stopped by the consumer's memory of command ids (agent/bus/commands.py).
"""

from __future__ import annotations

import hashlib
import hmac
import math

SIGNATURE_HEADER = "x-pspe-signature"
MIN_KEY_BYTES = 16
DEFAULT_MAX_AGE_S = 300.0
DEFAULT_MAX_SKEW_S = 30.0


class SignatureError(ValueError):
    """Base of every refusal; `reason` is a short counter label."""

    reason = "invalid"


class MissingSignature(SignatureError):
    reason = "missing"


class MalformedSignature(SignatureError):
    reason = "malformed"


class BadSignature(SignatureError):
    reason = "mismatch"


class StaleSignature(SignatureError):
    reason = "stale"


def fleet_key(secret: str | bytes) -> bytes:
    """The configured fleet key as bytes; refuses keys too short to be a secret."""
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"fleet key must be at least {MIN_KEY_BYTES} bytes (got {len(key)})")
    return key


def _mac(key: bytes, stamp: str, body: bytes) -> str:
    return hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, key: bytes, now: float) -> str:
    """The header value for `body` signed at `now`."""
    stamp = str(int(now))
    return f"t={stamp},v1={_mac(key, stamp, body)}"


def parse_signature(header: str | bytes | None) -> tuple[int, str]:
    if header is None or header == "" or header == b"":
        raise MissingSignature("command is not signed")
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedSignature("signature header is not ASCII") from None
    parts = dict(p.partition("=")[::2] for p in header.split(","))
    stamp, mac = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or len(mac) != 64:
        raise MalformedSignature(f"signature header not of the form t=<secs>,v1=<64 hex>: {header[:80]!r}")
    return int(stamp), mac


def verify(body: bytes, header: str | bytes | None, key: bytes, now: float,
           max_age_s: float = DEFAULT_MAX_AGE_S, max_skew_s: float = DEFAULT_MAX_SKEW_S) -> int:
    """Check the signature and its age; returns the signed timestamp or raises SignatureError."""
    stamp, mac = parse_signature(header)
    expected = _mac(key, str(stamp), body)
    if not hmac.compare_digest(expected, mac.lower()):
        raise BadSignature("signature does not match the body and fleet key")
    if not math.isfinite(now) or now - stamp > max_age_s:
        raise StaleSignature(f"signed {now - stamp:.0f}s ago (max {max_age_s:.0f}s)")
    if stamp - now > max_skew_s:
        raise StaleSignature(f"signed {stamp - now:.0f}s in the future (max skew {max_skew_s:.0f}s)")
    return stamp
