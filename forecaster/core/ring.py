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

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.core.compiled import kernel, nan_clip

CELL_BYTES = 5
LEVELS = 4094  # 12-bit codes 0..4094; an even count puts 0 on a code (2047)
GAP_UNIT_NS = 60 * 1_000_000_000  # gaps are float16 minutes: 3.6 µs to 45 days
_MASK_12 = 0xFFF
_LARGEST_MINUTES = float(np.finfo(np.float16).max)  # 45 days: a longer gap counts as that long
_SMALLEST_NORMAL = float(np.finfo(np.float16).smallest_normal)

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
        them back (to advance the reconstructed time by). A NaN is taken as ``clip``."""
        z, d = np.asarray(z, np.float64), np.asarray(d, np.float64)
        cells = np.empty((len(z), CELL_BYTES), np.uint8)
        decoded = np.empty(len(z), np.int64)
        _encode(z, d, np.asarray(gap_ns, np.int64), self.clip, self.step, cells, decoded)
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


@kernel
def _encode(
    z: FloatArray, d: FloatArray, gap_ns: IntArray, clip: float, step: float,
    cells: Cells, decoded: IntArray,
) -> None:  # fmt: skip
    for row in range(len(z)):
        decoded[row] = encode_cell(z[row], d[row], gap_ns[row], clip, step, cells[row])


@kernel
def encode_cell(z: float, d: float, gap_ns: int, clip: float, step: float, cell: Cells) -> int:
    """Write one step into ``cell`` (CELL_BYTES); returns its gap as decoding gives it back."""
    minutes = nan_clip(gap_ns * (1.0 / GAP_UNIT_NS), -_LARGEST_MINUTES, _LARGEST_MINUTES)
    gap = _half_bits(minutes)
    code = _level(z, clip, step) | (_level(d, clip, step) << 12) | (gap << 24)
    for byte in range(CELL_BYTES):
        cell[byte] = (code >> (8 * byte)) & 0xFF
    return int(np.rint(_half_value(gap) * GAP_UNIT_NS))


@kernel
def _level(value: float, clip: float, step: float) -> int:
    """The 12-bit code of ``value`` clipped to +-``clip`` (NaN: ``clip``)."""
    clipped = clip if np.isnan(value) else nan_clip(value, -clip, clip)
    return int(np.rint((clipped + clip) * (1.0 / step)))


@kernel
def _half_bits(value: float) -> int:
    """The float16 bits of ``value`` (finite, within float16's range), rounded to the
    nearest, ties to even, as NumPy's ``astype(np.float16)``."""
    sign = 0x8000 if np.signbit(value) else 0
    size = abs(value)
    if size < _SMALLEST_NORMAL:  # a subnormal: a count of the smallest step
        return sign | int(np.rint(size * 2.0**24))  # 1024 is the smallest normal's bits
    _, exponent = math.frexp(size)  # size = fraction * 2**exponent, fraction in [0.5, 1)
    mantissa = int(np.rint((math.ldexp(size, 1 - exponent) - 1.0) * 1024.0))
    return sign | (((exponent + 14) << 10) + mantissa)  # a carry rounds up the exponent


@kernel
def _half_value(bits: int) -> float:
    """The value of float16 ``bits`` that ``_half_bits`` writes (finite)."""
    exponent, mantissa = (bits >> 10) & 0x1F, bits & 0x3FF
    if exponent == 0:
        size = mantissa * 2.0**-24
    else:
        size = math.ldexp(1.0 + mantissa / 1024.0, exponent - 15)
    return -size if bits & 0x8000 else size


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
