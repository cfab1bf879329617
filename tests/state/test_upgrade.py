"""Checkpoints of format 3 (float32/int64 rings, one interval threshold per kind), read as
format 4 (five-byte cells, a threshold per expert)."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.core.engine import Engine
from forecaster.core.table import History, TableSnapshot
from forecaster.state.checkpoint import Checkpoint, CheckpointError, decode, encode
from forecaster.state.upgrade import FORMAT_3_STATS
from tests.support.checkpoints import PARAMS, pack, state_of, unpack


def history_of(snapshot: TableSnapshot) -> History:
    """The rings of ``snapshot``'s series (in its order), read back from a table."""
    table = Engine(PARAMS).table
    table.reset_recurrent(snapshot.recurrent.shape[1])
    return table.history(table.put(snapshot))


def format_3(data: bytes) -> bytes:
    """A checkpoint as format 3 wrote it: rings of float32 z and d and int64 ts, each
    series' newest step in column ``(ring_count - 1) % ring_length``; statistics with the
    issuing expert's threshold as the kind's one."""
    arrays, header = unpack(data)
    stats = np.zeros(len(arrays["stats"]), FORMAT_3_STATS)
    calibration = arrays.pop("calibration")
    for name in FORMAT_3_STATS.names or ():
        if name.endswith("_shift"):
            best = calibration[name.replace("_shift", "_best")]
            stats[name] = calibration[name][np.arange(len(best)), best]
        elif name in (calibration.dtype.names or ()):
            stats[name] = calibration[name]
        else:
            stats[name] = arrays["stats"][name]
    arrays["stats"] = stats
    history = history_of(decode(data, PARAMS).state.snapshot)
    count, length = arrays["ring_count"], PARAMS.ring_length
    rings = {"ring_z": np.zeros((len(count), length), np.float32),
             "ring_d": np.zeros((len(count), length), np.float32),
             "ring_ts": np.zeros((len(count), length), np.int64)}  # fmt: skip
    for row in range(len(count)):
        held = int(history.length[row])
        columns = (int(count[row]) - held + np.arange(held)) % length
        rings["ring_z"][row, columns] = history.z[row, :held]
        rings["ring_d"][row, columns] = history.d[row, :held]
        rings["ring_ts"][row, columns] = history.ts[row, :held]
    for name in ("ring", "ring_newest_ts", "ring_track_ts"):
        del arrays[name]
    return pack(arrays | rings, header | {"format": 3})


def test_a_format_3_checkpoint_is_upgraded_to_the_same_history() -> None:
    data = encode(Checkpoint(state_of(0, ticks=20), 9), PARAMS)  # its rings wrapped round
    old = format_3(data)
    assert unpack(old)[1]["format"] == 3 and "ring_z" in unpack(old)[0]
    want, got = decode(data, PARAMS).state.snapshot, decode(old, PARAMS).state.snapshot
    assert got.series == want.series
    for name in ("ring_count", "ring_newest_ts", "recurrent", "last_forecast"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_array_equal(got.stats, want.stats)
    for name in FORMAT_3_STATS.names or ():
        if name in (want.calibration.dtype.names or ()) and not name.endswith("_shift"):
            np.testing.assert_array_equal(got.calibration[name], want.calibration[name])
    rows = np.arange(len(got.series))
    for kind in ("naive", "model"):
        issuing = want.calibration[f"{kind}_shift"][rows, want.calibration[f"{kind}_best"]]
        assert (got.calibration[f"{kind}_shift"] == issuing[:, None]).all()
        assert not got.calibration[f"{kind}_loss"].any()
        assert not got.calibration[f"{kind}_best"].any()
    upgraded, original = history_of(got), history_of(want)
    assert (original.length == PARAMS.ring_length).all()
    level = Engine(PARAMS).table.codec.step
    np.testing.assert_allclose(upgraded.z, original.z, atol=level / 2)
    np.testing.assert_allclose(upgraded.d, original.d, atol=level / 2)
    np.testing.assert_array_equal(upgraded.length, original.length)
    # Times 1 s apart: each encoding keeps one within 2/1024 s (tests/core/test_ring.py).
    np.testing.assert_allclose(upgraded.ts, original.ts, atol=2 * 2 * 10**9 / 1024)


def test_a_format_3_checkpoint_with_a_nan_in_its_rings_is_refused_as_corrupt() -> None:
    arrays, header = unpack(format_3(encode(Checkpoint(state_of(0), 9), PARAMS)))
    arrays["ring_d"][1, 0] = np.nan
    with pytest.raises(CheckpointError, match="ring_z or ring_d holds NaN") as refused:
        decode(pack(arrays, header), PARAMS)
    assert refused.value.reason == "corrupt"
