import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from forecaster.core import ring
from forecaster.core.ring import RingCodec
from forecaster.core.table import SeriesTable

SECOND = 10**9
DAY = 86_400 * SECOND


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1,
                max_size=50), st.sampled_from([1.0, 8.0, 20.0]))  # fmt: skip
def test_z_and_d_come_back_within_half_a_level_of_their_clipped_value(
    values: list[float], clip: float
) -> None:
    codec = RingCodec(clip)
    x = np.array(values)
    cells, _ = codec.encode(x, -x, np.zeros(len(x), np.int64))
    z, d, _ = codec.decode(cells)
    clipped = np.clip(x, -clip, clip)
    np.testing.assert_allclose(z, clipped, atol=codec.step / 2 + 1e-6 * clip)
    np.testing.assert_allclose(d, -clipped, atol=codec.step / 2 + 1e-6 * clip)


def test_a_gap_comes_back_within_one_part_in_2048() -> None:
    gaps = np.array([0, 1_000, 3_000_000, 250 * 10**6, SECOND, 60 * SECOND, DAY, 3 * DAY + 7])
    _, decoded = RingCodec().encode(np.zeros(len(gaps)), np.zeros(len(gaps)), gaps)
    assert (np.abs(decoded - gaps) <= gaps / 2048 + 2_000).all()  # 3.6 µs: float16's finest


def ring_times(gaps: np.ndarray, ring_length: int) -> tuple[np.ndarray, np.ndarray]:
    """The times a ring gives back after one series appended steps ``gaps`` apart, and the
    true times of the steps it holds."""
    table = SeriesTable(ring_length, state_size=0)
    slot = table.slots_for(["A"])
    ts = 1_767_571_200 * SECOND + np.cumsum(gaps)
    for t in ts.tolist():
        table.append_history(slot, np.zeros(1), np.zeros(1), np.array([t]))
    history = table.history(slot)
    return history.ts[0, : history.length[0]], ts[-ring_length:]


def test_times_do_not_drift_along_the_ring() -> None:
    """A day and a second apart is no float16 number of minutes: every gap is rounded the
    same way, yet the oldest of 512 steps is as close to its time as the second newest."""
    got, want = ring_times(np.full(2_000, DAY + SECOND), ring_length=512)
    assert got[-1] == want[-1]  # the newest is exact
    assert np.abs(got - want).max() <= (DAY + SECOND) / 1024


def test_irregular_times_stay_within_their_own_gaps_precision() -> None:
    rng = np.random.default_rng(3)
    gaps = np.exp(rng.uniform(np.log(1e6), np.log(5 * DAY), 3_000)).astype(np.int64)
    got, want = ring_times(gaps, ring_length=512)
    # A step's time is off by what rounding its gap left over, and a gap carries what the
    # one before left over: within the larger of the two gaps' precision, and the newest's.
    larger = np.maximum(gaps[-512:], gaps[-513:-1])
    bound = (larger + larger[-1]) / 1024 + 8_000
    assert (np.abs(got - want) <= bound).all()


def numpy_encode(codec: RingCodec, z: np.ndarray, d: np.ndarray, gap_ns: np.ndarray):  # type: ignore[no-untyped-def]
    """The encoding in NumPy: the compiled one must write the same bytes (float16 by
    NumPy's own rounding)."""
    levels = np.fmax(np.fmin(np.array((z, d)), codec.clip), -codec.clip) + codec.clip
    codes = np.rint(levels * (1.0 / codec.step)).astype(np.int64)
    minutes = np.clip(gap_ns * (1.0 / ring.GAP_UNIT_NS), -65504.0, 65504.0).astype(np.float16)
    code = codes[0] | (codes[1] << 12) | (minutes.view(np.uint16).astype(np.int64) << 24)
    cells = code.astype("<i8").view(np.uint8).reshape(-1, 8)[:, : ring.CELL_BYTES]
    return cells, np.rint(minutes.astype(np.float64) * ring.GAP_UNIT_NS).astype(np.int64)


@given(st.lists(st.tuples(st.floats(allow_infinity=True, allow_nan=True),
                          st.one_of(st.integers(-(2**62), 2**62),
                                    st.integers(0, 2**20).map(lambda k: k * 60 * SECOND // 2**18))),
                min_size=1, max_size=40), st.sampled_from([1.0, 8.0]))  # fmt: skip
def test_compiled_encoding_writes_numpys_bytes(steps: list[tuple[float, int]], clip: float) -> None:
    """Gaps include exact float16 ties (multiples of 2**-18 minutes), sub-normal and
    negative ones, and ones past float16's range; values include NaN and infinities."""
    codec = RingCodec(clip)
    z = np.array([value for value, _ in steps])
    gaps = np.array([gap for _, gap in steps], np.int64)
    cells, decoded = codec.encode(z, -z[::-1], gaps)
    expected_cells, expected_gaps = numpy_encode(codec, z, -z[::-1], gaps)
    np.testing.assert_array_equal(cells, expected_cells)
    np.testing.assert_array_equal(decoded, expected_gaps)
