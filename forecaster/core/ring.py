"""A warm step in five bytes: how the history rings keep (z, d, ts) compactly.

A ring holds ``ring_length`` (512) steps of every series, so its cell is most of what a
series costs: 16 bytes as float32, float32, int64 made 8 KiB per series. A cell here is
40 bits:

- ``z`` and ``d`` (standardised, clipped to +-``clip``) as 12-bit fixed point: within
  ``clip / 4094`` (0.002 at the default clip of 8) of the value, 0 exactly;
- the gap to the series' previous step as a float16 count of minutes: 11 significant
  bits, so within 1/2048 of the gap (a gap of 3 ms within 2 µs, of a day and a second
  within 42 s; whole minutes up to 2,048 exactly).

Gaps are taken from the time the decoded gaps have reached (error feedback), so errors
do not add up along the ring: every step's time is within the precision of its own gap
and the one before it, however old (``tests/core/test_ring.py``). The series' newest
time is kept exactly beside the ring, with the time its decoded gaps reached.

>>> codec = RingCodec(clip=8.0)
>>> cells, gaps = codec.encode(np.array([0.0, 1.25, -8.0]), np.array([0.5, 9.0, 0.0]),
...                            np.array([0, 3_000_000, 86_400 * 10**9]))
>>> z, d, decoded = codec.decode(cells)
>>> [round(float(v), 4) for v in (*z, *d)], decoded.tolist() == gaps.tolist()
([0.0, 1.2506, -8.0, 0.5002, 8.0, 0.0], True)
>>> gaps.tolist()
[0, 3000498, 86400000000000]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CELL_BYTES = 5
LEVELS = 4094  # 12-bit codes 0..4094; an even count puts 0 on a code (2047)
GAP_UNIT_NS = 60 * 1_000_000_000  # gaps are float16 minutes: 3.6 µs to 45 days
_MASK_12 = 0xFFF
_LARGEST_MINUTES = float(np.finfo(np.float16).max)  # 45 days: a longer gap counts as that long

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Cells = npt.NDArray[np.uint8]  # (..., CELL_BYTES)


@dataclass(frozen=True)
class RingCodec:
    """Encodes and decodes ring cells for features clipped to +-``clip``."""

    clip: float = 8.0

    @property
    def step(self) -> float:
        """The distance between two neighbouring levels of ``z`` and ``d``."""
        return 2 * self.clip / LEVELS

    def encode(
        self, z: npt.ArrayLike, d: npt.ArrayLike, gap_ns: npt.ArrayLike
    ) -> tuple[Cells, IntArray]:
        """Cells of the steps, one row of CELL_BYTES each, and the gaps as decoding gives
        them back (to advance the reconstructed time by). A NaN is taken as ``clip``.

        Few NumPy calls, each on all rows: the engine encodes every round's warm steps.
        """
        levels = np.array((z, d), np.float64)
        np.fmax(np.fmin(levels, self.clip, out=levels), -self.clip, out=levels)  # NaN: clip
        levels += self.clip
        levels *= 1.0 / self.step
        codes = np.rint(levels, out=levels).astype(np.int64)
        minutes = np.asarray(gap_ns, np.int64) * (1.0 / GAP_UNIT_NS)
        np.fmax(np.fmin(minutes, _LARGEST_MINUTES, out=minutes), -_LARGEST_MINUTES, out=minutes)
        gap = minutes.astype(np.float16)
        code = codes[0] | (codes[1] << 12) | (gap.view(np.uint16).astype(np.int64) << 24)
        cells = code.astype("<i8", copy=False).view(np.uint8).reshape(-1, 8)[:, :CELL_BYTES]
        decoded = np.rint(gap.astype(np.float64) * GAP_UNIT_NS).astype(np.int64)
        return cells, decoded

    def decode(self, cells: Cells) -> tuple[Float32Array, Float32Array, IntArray]:
        """``z``, ``d`` and the gap in ns of every cell (shape: ``cells`` without its last axis)."""
        shape = cells.shape[:-1]
        padded = np.zeros((*shape, 8), np.uint8)
        padded[..., :CELL_BYTES] = cells
        code = padded.view("<i8").reshape(shape)
        z = self._value(code & _MASK_12)
        d = self._value((code >> 12) & _MASK_12)
        gap = ((code >> 24) & 0xFFFF).astype(np.uint16)
        return z, d, gap_ns_of(gap)

    def _value(self, level: IntArray) -> Float32Array:
        values = level * self.step - self.clip
        return values.astype(np.float32)


def gap_ns_of(code: npt.NDArray[np.uint16]) -> IntArray:
    """The gap in ns that a code (float16 bits of minutes) stands for; 0 for a code that is
    no number (damaged)."""
    minutes = code.view(np.float16).astype(np.float64)
    gap: IntArray = np.rint(np.where(np.isfinite(minutes), minutes, 0.0) * GAP_UNIT_NS).astype(
        np.int64
    )
    return gap


def finite_gaps(cells: Cells) -> bool:
    """Whether every cell's gap is a number (``encode`` writes no other)."""
    gap = (cells[..., 3].astype(np.uint16) | (cells[..., 4].astype(np.uint16) << 8)).view(
        np.float16
    )
    return bool(np.isfinite(gap).all())
