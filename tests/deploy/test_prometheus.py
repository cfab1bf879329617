"""The service's metrics as a real Prometheus sees them, with deploy/'s dashboard and rules.

A `forecaster run` replays a short tick file with malformed rows (no loop, so it keeps
serving its endpoints after the file ends) and Prometheus scrapes it every second.

Rules for "every query returns data":

- Dashboard expressions are run with Grafana's variables set (``$__rate_interval`` 1m,
  ``$__range`` 5m).
- Alert expressions are conditions, false in a healthy run. Each is run with its
  comparisons against a number turned into ``bool`` comparisons (``x > 0.05`` becomes
  ``x > bool 0.05``), which keep every series with a 0/1 value instead of filtering:
  non-empty exactly when the series the alert watches exist.
- Per-partition Kafka consumer lag exists only while a Kafka source has partitions
  assigned; this file-mode run has none. Expressions on it are checked to evaluate
  without error, and the metric to be declared on /metrics.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import ALERT_RULES, DEPLOY, LABELLED_SERIES, ForecasterProcess, Samples
from tests.support.prometheus import PrometheusServer, PrometheusTools, wait_until
from tests.support.replay_input import ReplayInput

# Set-up may install Prometheus with apt: minutes on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "forecaster.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m"}
KAFKA_ONLY = "forecaster_kafka_consumer_lag_messages"
COMPARISON_WITH_NUMBER = re.compile(r"(==|!=|>=|<=|>|<)\s*(?=-?[0-9])")
SCRAPE_TIMEOUT_S = 300.0  # a safety net: scrapes and rule evaluations come every second
NO_LABELS: frozenset[tuple[str, str]] = frozenset()


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    for variable, value in GRAFANA_VARIABLES.items():
        expressions = [expr.replace(variable, value) for expr in expressions]
    return expressions


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def as_signal(expr: str) -> str:
    """The alert's condition with its comparisons kept as 0/1 values, not filters."""
    return COMPARISON_WITH_NUMBER.sub(r"\1 bool ", expr)


@pytest.fixture(scope="module")
def replayed(forecaster_service: ForecasterProcess, replay_input: ReplayInput) -> Samples:
    return forecaster_service.wait_replayed(replay_input)


@pytest.fixture(scope="module")
def scraped(prometheus: PrometheusServer, replayed: Samples, replay_input: ReplayInput) -> None:
    """Prometheus holds the final counts, in more than one sample (so rate() has data)."""

    complete = (
        "count_over_time(forecaster_ticks_received_total[1m]) >= 2"
        f" and forecaster_ticks_received_total == {replay_input.received}"
    )
    wait_until(
        lambda: prometheus.query(complete),
        SCRAPE_TIMEOUT_S,
        "Prometheus to scrape the replayed counts",
        prometheus.log,
    )


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def total(samples: Samples, name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


@pytest.mark.usefixtures("scraped")
def test_every_dashboard_query_returns_data(
    prometheus: PrometheusServer, forecaster_service: ForecasterProcess
) -> None:
    empty = []
    for expr in dashboard_expressions():
        result = prometheus.query(expr)
        if KAFKA_ONLY not in expr and not result:
            empty.append(expr)
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    assert f"# TYPE {KAFKA_ONLY} gauge" in forecaster_service.get("/metrics")[1]


@pytest.mark.usefixtures("scraped")
def test_every_alert_watches_series_that_exist(prometheus: PrometheusServer) -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "ForecasterNoForecasts", "ForecasterConsumerLagGrowing", "ForecasterRejectRatioHigh",
        "ForecasterWorseThanNaive", "ForecasterRetrainFailing", "ForecasterCheckpointStale",
        "ForecasterDeliveryFailing", "ForecasterDeadLettersRefused", "ForecasterNonFiniteForecasts",
        "ForecasterDecayWithoutPromotion",
        "ForecasterTransactionsAborting",
    }  # fmt: skip
    empty = []
    for rule in rules:
        result = prometheus.query(as_signal(rule["expr"]))
        if KAFKA_ONLY not in rule["expr"] and not result:
            empty.append(f"{rule['alert']}: {as_signal(rule['expr'])}")
    assert not empty, "alerts watching nothing:\n" + "\n".join(empty)


@pytest.mark.usefixtures("scraped")
def test_prometheus_evaluates_every_rule_without_error(prometheus: PrometheusServer) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        pending = [r for r in rules if r.get("lastEvaluation", "").startswith("0001")]
        return rules if rules and not pending else None

    rules = wait_until(evaluated, SCRAPE_TIMEOUT_S, "every rule to be evaluated", prometheus.log)
    assert len(rules) == len(alert_rules())
    assert {r["name"]: r["health"] for r in rules} == {r["alert"]: "ok" for r in alert_rules()}


def test_counts_agree_with_the_input(replayed: Samples, replay_input: ReplayInput) -> None:
    received = value(replayed, "forecaster_ticks_received_total")
    accepted = value(replayed, "forecaster_ticks_accepted_total")
    rejected = {
        dict(labels)["reason"]: v
        for (name, labels), v in replayed.items()
        if name == "forecaster_ticks_rejected_total" and v
    }
    assert received == replay_input.received
    assert accepted + sum(rejected.values()) == received
    assert rejected == replay_input.rejected
    assert accepted == replay_input.accepted
    assert total(replayed, "forecaster_forecasts_emitted_total") == accepted
    assert value(replayed, "forecaster_forecasts_emitted_total", kind="model") > 0
    assert value(replayed, "forecaster_batch_size_ticks_sum") == received
    assert value(replayed, "forecaster_active_series") == len(replay_input.series)
    assert value(replayed, "forecaster_series_created_total") == len(replay_input.series)
    assert value(replayed, "forecaster_tick_to_forecast_seconds_count") == value(
        replayed, "forecaster_engine_step_seconds_count"
    )


def test_counts_agree_with_the_outputs(
    replayed: Samples, forecaster_service: ForecasterProcess
) -> None:
    forecasts = forecaster_service.forecasts.read_text().splitlines()
    dead_letters = forecaster_service.dead_letters.read_text().splitlines()
    assert len(forecasts) == value(replayed, "forecaster_ticks_accepted_total")
    assert len(dead_letters) == total(replayed, "forecaster_ticks_rejected_total")


def test_quality_counters_match_the_forecasts_written(
    replayed: Samples, forecaster_service: ForecasterProcess
) -> None:
    """Recompute each model forecast's error from the forecasts file and the next price."""
    previous: dict[str, dict[str, Any]] = {}
    points, abs_error, naive_abs_error = 0, 0.0, 0.0
    for line in forecaster_service.forecasts.read_text().splitlines():
        record = json.loads(line)
        before = previous.get(record["series"])
        if before is not None and before["model_version"] != "naive":
            points += 1
            abs_error += abs(before["forecast"] - record["price"]) / before["price"]
            naive_abs_error += abs(before["price"] - record["price"]) / before["price"]
        previous[record["series"]] = record
    assert points > 0
    assert value(replayed, "forecaster_quality_points_total") == points
    assert value(replayed, "forecaster_quality_abs_error_total") == pytest.approx(abs_error)
    assert value(replayed, "forecaster_quality_naive_abs_error_total") == pytest.approx(
        naive_abs_error
    )
    for figure in ("mae", "rmse", "mase", "directional_accuracy"):
        assert math.isfinite(value(replayed, f"forecaster_quality_{figure}_ratio"))
        for series in LABELLED_SERIES:
            labelled = value(replayed, f"forecaster_series_quality_{figure}_ratio", series=series)
            assert math.isfinite(labelled)


def test_health_readiness_and_model(
    replayed: Samples, forecaster_service: ForecasterProcess
) -> None:
    assert forecaster_service.get("/healthz") == (200, "ok\n")
    status, body = forecaster_service.get("/readyz")
    assert (status, body.startswith("serving lstm-")) == (200, True), body
    info = [
        dict(labels) for (name, labels), _ in replayed.items() if name == "forecaster_model_info"
    ]
    assert [i["version"] for i in info] == [body.split()[1]]
    assert 0 <= value(replayed, "forecaster_model_age_seconds") < 3600


def test_exposition_passes_promtool(
    replayed: Samples, forecaster_service: ForecasterProcess, prometheus_tools: PrometheusTools
) -> None:
    status, text = forecaster_service.get("/metrics")
    assert status == 200
    check = subprocess.run(
        [str(prometheus_tools.promtool), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    "what, target",
    [("rules", ALERT_RULES), ("config", DEPLOY / "prometheus" / "prometheus.yml")],
)
def test_deploy_files_pass_promtool(
    prometheus_tools: PrometheusTools, what: str, target: Path
) -> None:
    check = subprocess.run(
        [str(prometheus_tools.promtool), "check", what, str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_service_stops_cleanly_on_sigterm(
    replayed: Samples, forecaster_service: ForecasterProcess
) -> None:
    assert forecaster_service.stop() == 0, forecaster_service.log()
