import logging
from typing import Any

import numpy as np
import pytest

from forecaster.core.ticks import rules
from forecaster.core.ticks.csv_rows import parse_csv_frame
from forecaster.core.ticks.format import RejectReason
from forecaster.core.ticks.json_messages import parse_messages
from tests.support.ticks import read_csv, tick


class PoisonError(Exception):
    """What a bug, or a value numpy or pandas choke on, raises inside the parser."""


def poison_price(monkeypatch: pytest.MonkeyPatch, price: float) -> None:
    """Make the parser raise while checking any batch holding a tick of ``price``."""
    check_price = rules._check_price

    def checking(rows: Any) -> None:
        if np.any(rows.price == price):
            raise PoisonError(f"price {price} bites\nhard")
        check_price(rows)

    monkeypatch.setattr(rules, "_check_price", checking)


def test_a_message_the_parser_raises_on_is_an_internal_error_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison_price(monkeypatch, 666.0)
    payloads = [tick(price=1.0), tick(price=666.0), tick(price=-1.0), tick(price=2.0)]
    with caplog.at_level(logging.DEBUG, logger="forecaster.faults"):
        batch = parse_messages(payloads)
    assert batch.received == 4
    assert batch.ticks.position.tolist() == [0, 3]
    assert batch.ticks.price.tolist() == [1.0, 2.0]
    assert [(r.position, r.raw, r.reason, r.detail) for r in batch.rejects] == [
        (1, payloads[1], RejectReason.INTERNAL_ERROR, "PoisonError: price 666.0 bites hard"),
        (2, payloads[2], RejectReason.PRICE_NOT_POSITIVE, "price -1.0 is not > 0"),
    ]
    assert any("parsing a tick" in record.getMessage() for record in caplog.records)


def test_a_csv_row_the_parser_raises_on_is_an_internal_error_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison_price(monkeypatch, 666.0)
    frame = read_csv("series,ts,price\nA,1000,1.5\nA,2000,666\nA,3000,2\n")
    batch = parse_csv_frame(frame, first_position=7)
    assert batch.ticks.position.tolist() == [7, 9]
    assert batch.ticks.ts.tolist() == [1000 * 10**6, 3000 * 10**6]
    assert [(r.position, r.raw, r.reason) for r in batch.rejects] == [
        (8, b"A,2000,666", RejectReason.INTERNAL_ERROR)
    ]


def test_a_batch_that_raises_only_as_a_whole_still_parses_every_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_price = rules._check_price

    def raising_on_batches(rows: Any) -> None:
        if len(rows.price) > 1:
            raise PoisonError("only in company")
        check_price(rows)

    monkeypatch.setattr(rules, "_check_price", raising_on_batches)
    payloads = [tick(price=1.0), tick(price=0.0), tick(price=3.0)]
    alone = parse_messages(payloads)
    assert alone.ticks.position.tolist() == [0, 2]
    assert [r.reason for r in alone.rejects] == [RejectReason.PRICE_NOT_POSITIVE]
