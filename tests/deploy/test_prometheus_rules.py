"""The shipped Prometheus rules: valid, unit-tested alert by alert with promtool, and the same as
the PrometheusRule in k8s/monitoring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.paths import REPO
from tests.support.tools import require_tool

ROOT = REPO
RULES = ROOT / "deploy" / "prometheus" / "costctx-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "costctx-rules.test.yaml"
PROMETHEUS_RULE = ROOT / "k8s" / "monitoring" / "prometheusrule.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = require_tool("promtool", package="prometheus")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def _alerts(groups: list[dict]) -> list[str]:
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it is expected quiet."""
    alerts = _alerts(yaml.safe_load(RULES.read_text())["groups"])
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert len(alerts) >= 11
    assert set(alerts) <= fires, f"never shown firing: {set(alerts) - fires}"
    assert set(alerts) <= quiet, f"never shown quiet: {set(alerts) - quiet}"


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests are not vacuous: loosening one threshold (5% unknown-tenant share to 50%)
    makes promtool report the missing alert."""
    rules = RULES.read_text().replace("> 0.05", "> 0.5")
    assert rules != RULES.read_text()
    (tmp_path / "costctx-rules.yaml").write_text(rules)
    (tmp_path / "costctx-rules.test.yaml").write_text(RULE_TESTS.read_text())
    result = _promtool("test", "rules", str(tmp_path / "costctx-rules.test.yaml"))
    assert result.returncode != 0
    assert "CostctxUnknownTenantSpendHigh" in result.stdout + result.stderr


def test_prometheus_rule_is_generated_from_the_rules_file(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_prometheusrule.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    # What the operator hands Prometheus is itself a valid rules file.
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(resource["spec"]))
    result = _promtool("check", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    kustomization = yaml.safe_load((PROMETHEUS_RULE.parent / "kustomization.yaml").read_text())
    assert PROMETHEUS_RULE.name in kustomization["resources"]
