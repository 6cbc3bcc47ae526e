"""The on-disk spool: order, bounds, counted drops, torn tails and restarts."""

import os

import pytest

from agent.bus.base import OutMessage
from agent.bus.spool import Spool, encode_record, parse_records


def msgs(start, n, size=100):
    return [OutMessage(f"h1.samples", bytes([i % 251]) * size, message_id=f"h1:{i:04d}") for i in range(start, start + n)]


def drain(spool, batch=7):
    out = []
    while (b := spool.read_batch(max_records=batch)) is not None:
        out.extend(b.messages)
        spool.commit(b)
    return out


def test_records_come_back_in_order_and_files_go_once_confirmed(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000, fsync=False)
    spool.append(msgs(0, 20))
    spool.append(msgs(20, 5))
    assert spool.pending_records == 25 and len(list(tmp_path.glob("seg-*.log"))) > 2
    assert [m.message_id for m in drain(spool)] == [f"h1:{i:04d}" for i in range(25)]
    assert spool.pending_records == 0 and spool.pending_bytes == 0
    assert list(tmp_path.glob("seg-*.log")) == []
    assert spool.read_batch() is None


def test_a_batch_is_not_consumed_until_committed(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, fsync=False)
    spool.append(msgs(0, 3))
    first = spool.read_batch(max_records=2)
    again = spool.read_batch(max_records=2)
    assert first.messages == again.messages and spool.pending_records == 3
    spool.commit(first)
    assert [m.message_id for m in spool.read_batch().messages] == ["h1:0002"]


def test_appends_during_replay_keep_their_place(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=500, fsync=False)
    spool.append(msgs(0, 10))
    batch = spool.read_batch(max_records=4)
    spool.append(msgs(10, 10))
    spool.commit(batch)
    assert [m.message_id for m in drain(spool)] == [f"h1:{i:04d}" for i in range(4, 20)]


def test_nothing_is_dropped_within_the_bound(tmp_path):
    rec = len(encode_record(msgs(0, 1)[0]))
    spool = Spool(tmp_path, max_bytes=rec * 50, segment_bytes=rec * 5, fsync=False)
    for i in range(10):
        spool.append(msgs(i * 5, 5))
    assert spool.dropped_records == 0 and spool.pending_records == 50
    assert spool.disk_bytes <= spool.max_bytes


def test_past_the_bound_the_oldest_go_first_and_are_counted(tmp_path):
    rec = len(encode_record(msgs(0, 1)[0]))
    spool = Spool(tmp_path, max_bytes=rec * 20, segment_bytes=rec * 5, fsync=False)
    for i in range(10):
        spool.append(msgs(i * 5, 5))
    assert spool.disk_bytes <= spool.max_bytes
    kept = [int(m.message_id[3:]) for m in drain(spool)]
    assert kept == list(range(50 - len(kept), 50))          # the newest, contiguous, in order
    assert spool.dropped_records == 50 - len(kept) > 0


def test_a_batch_read_before_its_segment_was_dropped_commits_harmlessly(tmp_path):
    rec = len(encode_record(msgs(0, 1)[0]))
    spool = Spool(tmp_path, max_bytes=rec * 10, segment_bytes=rec * 5, fsync=False)
    spool.append(msgs(0, 5))
    stale = spool.read_batch(max_records=2)
    spool.append(msgs(5, 10))                                # pushes segment 1 out
    spool.commit(stale)
    assert [int(m.message_id[3:]) for m in drain(spool)] == list(range(5, 15))


def test_a_record_larger_than_the_bound_is_dropped_and_counted(tmp_path):
    spool = Spool(tmp_path, max_bytes=1000, fsync=False)
    spool.append(msgs(0, 1, size=5000) + msgs(1, 1))
    assert spool.dropped_records == 1 and [m.message_id for m in drain(spool)] == ["h1:0001"]


@pytest.mark.parametrize("fsync", [True, False])
def test_a_restart_replays_what_was_not_confirmed_and_cuts_a_torn_tail(tmp_path, fsync):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=600, fsync=fsync)
    spool.append(msgs(0, 12))
    last = sorted(tmp_path.glob("seg-*.log"))[-1]
    with open(last, "ab") as f:                               # a crash in the middle of a record
        f.write(encode_record(msgs(99, 1)[0])[:-7])
    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=600, fsync=fsync)
    assert reopened.recovered_torn_bytes > 0
    assert [m.message_id for m in drain(reopened)] == [f"h1:{i:04d}" for i in range(12)]
    reopened.append(msgs(12, 1))                              # appends go to a new, unused number
    assert [m.message_id for m in drain(reopened)] == ["h1:0012"]


def test_parse_records_stops_at_a_bad_crc():
    data = encode_record(msgs(0, 1)[0]) + bytearray(encode_record(msgs(1, 1)[0]))
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    records, good = parse_records(bytes(corrupted))
    assert len(records) == 1 and good == len(encode_record(msgs(0, 1)[0]))
    assert records[0][0].body == msgs(0, 1)[0].body
