"""A message that makes the parser itself raise costs only itself: it is rejected alone
(internal_error) and the others of its batch are parsed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from forecaster.core.ticks.columns import ParsedBatch, Rejected, concat_columns, empty_columns
from forecaster.core.ticks.format import RejectReason
from forecaster.faults import internal_error_detail, log_internal_error

log = logging.getLogger(__name__)


def isolated(
    parse: Callable[[int, int], ParsedBatch],
    size: int,
    raw_of: Callable[[int], bytes],
    first_position: int = 0,
) -> ParsedBatch:
    """``parse(0, size)``, the whole batch at once; if that raises (a bug, or input numpy
    or pandas choke on), each message alone, so that only one that raises by itself is
    lost, as a reject (internal_error).

    >>> def parse(first: int, end: int) -> ParsedBatch:
    ...     if first <= 1 < end:
    ...         raise ValueError("message 1 bites")
    ...     return ParsedBatch(empty_columns(), [], end - first, bytes)
    >>> [(r.position, r.reason.value, r.detail) for r in isolated(parse, 3, bytes).rejects]
    [(1, 'internal_error', 'ValueError: message 1 bites')]
    """
    try:
        return parse(0, size)
    except Exception as exc:  # whatever it is, it must not cost the other messages
        log.debug("parsing a batch of %d ticks raised (%s); parsing each alone",
                  size, internal_error_detail(exc))  # fmt: skip
    parts, rejects = [empty_columns()], []
    for i in range(size):
        try:
            alone = parse(i, i + 1)
        except Exception as exc:  # this message is the one; it becomes a dead letter
            log_internal_error("parsing a tick", exc)
            raw = _raw_or_nothing(raw_of, first_position + i)
            detail = internal_error_detail(exc)
            rejects.append(Rejected(first_position + i, raw, RejectReason.INTERNAL_ERROR, detail))
            continue
        parts.append(alone.ticks)
        rejects.extend(alone.rejects)
    return ParsedBatch(concat_columns(parts), rejects, received=size, raw_of=raw_of)


def _raw_or_nothing(raw_of: Callable[[int], bytes], position: int) -> bytes:
    try:
        return raw_of(position)
    except Exception as exc:  # a dead letter without its bytes beats none at all
        log_internal_error("keeping a tick's raw bytes", exc)
        return b""
