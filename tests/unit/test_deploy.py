"""The deployment files in deploy/ parse, and say what the daemon needs: the right
command, the signals it honours, a stop timeout above its grace period, probes on the
paths it serves, and no secret written into them."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from drplan.cli import cli
from drplan.scheduler.daemon import STOP_GRACE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PATHS = ("/metrics", "/status", "/healthz", "/readyz")


def serve_args_parse(args: list[str]) -> None:
    """The command line drplan itself accepts (`--help` stops after parsing)."""
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output


def test_the_systemd_unit_runs_serve_with_reload_and_a_long_enough_stop() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "drplan.service")
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    command = service["ExecStart"].split()
    assert command[0].endswith("/drplan")
    assert "serve" in command
    serve_args_parse(command[1:])
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > STOP_GRACE.total_seconds()
    assert service["User"] != "root"
    assert service["Restart"] == "on-failure"
    assert "network-online.target" in unit["Unit"]["After"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_kubernetes_manifest_probes_what_serve_answers() -> None:
    documents: list[dict[str, Any]] = list(
        yaml.safe_load_all((DEPLOY / "kubernetes" / "drplan.yaml").read_text())
    )
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"ConfigMap", "Deployment", "Service"}
    deployment = kinds["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > STOP_GRACE.total_seconds()
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    args = container["args"]
    serve_args_parse(args)
    listen = args[args.index("--listen") + 1]
    port = int(listen.rsplit(":", 1)[1])
    assert container["ports"][0]["containerPort"] == port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in PATHS
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    for secret in ("DRPLAN_PASSWORD", "DRPLAN_CATALOG"):
        assert "value" not in env[secret], f"{secret} must come from a Secret"
        assert "secretKeyRef" in env[secret]["valueFrom"]
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}
    service = kinds["Service"]
    assert service["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == port
