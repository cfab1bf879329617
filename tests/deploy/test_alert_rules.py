"""deploy/'s alert rules run by `promtool test rules` on series made up for each case:
an alert fires where it should, for the instance it should, and nowhere else."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.deploy import ALERT_RULES
from tests.support.prometheus import PrometheusTools

DECAYED_TWICE = "0 1 1 2 2 2 2 2 2 2 2 2"  # every 10 minutes: two decay runs by 30 min
NEVER = "0x11"
AT_30_MINUTES = "0 0 0 1 1 1 1 1 1 1 1 1"


def rule(name: str) -> dict[str, Any]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    (found,) = [r for group in groups for r in group["rules"] if r.get("alert") == name]
    return found


def series(instance: str, decay: str, gate: str, shadow: str) -> list[dict[str, str]]:
    """The counters of one instance: decay runs, gate promotions, shadow promotions."""
    labels = f'job="forecaster",instance="{instance}"'
    return [
        {"series": f'forecaster_retrain_triggers_total{{{labels},trigger="decay"}}',
         "values": decay},
        {"series": f'forecaster_retrains_total{{{labels},outcome="promoted"}}', "values": gate},
        {"series": f'forecaster_shadow_verdicts_total{{{labels},outcome="promoted"}}',
         "values": shadow},
    ]  # fmt: skip


def test_repeated_decay_without_a_promotion_alerts_and_a_promotion_silences_it(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    alert = rule("ForecasterDecayWithoutPromotion")
    annotations = {
        "summary": alert["annotations"]["summary"].replace("{{ $labels.instance }}", "stuck"),
        "description": alert["annotations"]["description"],
    }
    case = {
        "rule_files": [str(ALERT_RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "10m",
            "input_series": [
                *series("stuck", DECAYED_TWICE, NEVER, NEVER),
                *series("shadow-promoted", DECAYED_TWICE, NEVER, AT_30_MINUTES),
                *series("gate-promoted", DECAYED_TWICE, AT_30_MINUTES, NEVER),
                *series("decayed-once", "0 1 1 1 1 1 1 1 1 1 1 1", NEVER, NEVER),
            ],
            "alert_rule_test": [
                {"eval_time": "50m", "alertname": alert["alert"], "exp_alerts": []},  # pending
                {"eval_time": "100m", "alertname": alert["alert"], "exp_alerts": [{
                    "exp_labels": {"job": "forecaster", "instance": "stuck",
                                   "severity": "warning"},
                    "exp_annotations": annotations,
                }]},
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "decay.test.yml"
    path.write_text(yaml.safe_dump(case))
    check = subprocess.run(
        [str(prometheus_tools.promtool), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
