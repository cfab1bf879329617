"""Prometheus collectors made the service's way: a labelled counter exists with every
label value from the start, so PromQL finds its series before the first event, and a
gauge of a figure not known yet reads NaN, not a misleading 0.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> _ = counter_with_labels("demo_events", "Events, by kind", "kind", ["a", "b"], registry)
>>> _ = nan_gauge("demo_level", "A level", registry)
>>> registry.get_sample_value("demo_events_total", {"kind": "b"}), registry.get_sample_value(
...     "demo_level"
... )
(0.0, nan)
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge


def counter_with_labels(
    name: str, documentation: str, label: str, values: Iterable[str], registry: CollectorRegistry
) -> Counter:
    """A counter with one label, its series created for each of ``values``."""
    counter = Counter(name, documentation, [label], registry=registry)
    for value in values:
        counter.labels(value)
    return counter


def nan_gauge(name: str, documentation: str, registry: CollectorRegistry) -> Gauge:
    """A gauge that reads NaN, not a misleading 0, until first set."""
    gauge = Gauge(name, documentation, registry=registry)
    gauge.set(math.nan)
    return gauge


def rows_by_name(names: Iterable[str], labelled: Container[str]) -> dict[str, list[int]]:
    """The rows of each labelled name among ``names``, for per-series gauges.

    >>> rows_by_name(["A", "B", "A"], {"A"})
    {'A': [0, 2]}
    """
    rows: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        if name in labelled:
            rows.setdefault(name, []).append(row)
    return rows
