"""The history window: last N steps, last T of time, what cleaning drops; the training
samples and their early-stopping split."""

import numpy as np

from forecaster.retraining.dataset import Sequence, make_samples
from forecaster.retraining.window import WindowSpec, select_window
from forecaster.timestamps import NS_PER_S


def sequence(start_s: int, steps: int, z: float = 0.1) -> Sequence:
    ts = (start_s + np.arange(steps)) * NS_PER_S
    return Sequence(np.full(steps, z), np.zeros(steps), ts.astype(np.int64))


def test_last_ticks_keeps_the_newest_steps_of_each_series() -> None:
    window = select_window([sequence(0, 10), sequence(100, 6)], WindowSpec(ticks=4), min_steps=1)
    assert [len(s) for s in window.sequences] == [4, 4]
    assert window.sequences[0].ts.tolist() == [t * NS_PER_S for t in (6, 7, 8, 9)]
    assert window.summary["steps"] == 8 and window.summary["series"] == 2


def test_last_seconds_counts_back_from_the_newest_tick_and_drops_stale_series() -> None:
    window = select_window(
        [sequence(0, 10), sequence(100, 20)], WindowSpec(seconds=10), min_steps=2
    )
    # newest tick at 119 s: steps from 109 s on; the first series ended at 9 s.
    assert [s.ts[0] // NS_PER_S for s in window.sequences] == [109]
    assert window.summary["dropped_series"] == 1
    assert window.summary["last_ts"] == "1970-01-01T00:01:59+00:00"


def test_a_series_with_a_non_finite_value_or_too_few_steps_is_dropped_whole() -> None:
    broken = sequence(0, 10)
    broken.z[3] = np.nan
    window = select_window([broken, sequence(0, 10), sequence(0, 3)], WindowSpec(), min_steps=4)
    assert len(window.sequences) == 1
    assert np.isfinite(window.sequences[0].z).all()
    assert window.summary["dropped_series"] == 2


def test_an_empty_history_gives_an_empty_window() -> None:
    window = select_window([], WindowSpec(ticks=5), min_steps=1)
    assert window.sequences == [] and window.summary["steps"] == 0


def test_a_series_too_short_for_a_fifth_held_out_still_stops_on_its_last_sample() -> None:
    z = np.arange(101) / 100  # 100 targets: 20 % would be 20 steps, less than one sample
    series = Sequence(z, np.zeros(101), np.arange(101, dtype=np.int64) * NS_PER_S)
    samples = make_samples([series], length=32, stride=16, stopping_fraction=0.2, clip=8.0)
    assert len(samples.y_train) == 3 and len(samples.y_stopping) == 1
    np.testing.assert_allclose(samples.y_stopping[0], z[69:], rtol=1e-6)  # the last 32 targets
    assert samples.y_train[-1][-1] < samples.y_stopping[0][0]  # the stopping split is later
    too_short = make_samples([sequence(0, 50)], 32, 16, 0.2, clip=8.0)  # no room for both
    assert len(too_short.y_train) == 1 and len(too_short.y_stopping) == 0
