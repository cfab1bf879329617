"""The streaming core: a tick in, one forecast out, with no I/O.

``ticks`` (the tick format and its parsing), ``features`` (what the model sees of a
tick), ``table`` (per-series state in contiguous arrays), ``skill`` (per-series trust
in the model) and ``engine`` (a batch of ticks stepped through all of them).
"""
