"""The deployment files, checked without Docker or Kubernetes (neither runs here).

They are parsed, their structure checked, and every command, port, probe and variable they use
compared with the gateway's real CLI and settings, so they cannot drift from the code.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser
from gateway.core.settings import _KNOWN, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
DEFAULTS = Settings()


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_all(path)]


def gateway_args(args: list[str]) -> None:
    """The arguments parse with the gateway's own parser (argparse exits on a bad one)."""
    parsed = build_parser().parse_args(args)
    assert parsed.command == "serve"


def check_env_names(names: list[str]) -> None:
    unknown = [n for n in names if n.startswith("GATEWAY_") and n not in _KNOWN]
    assert unknown == [], f"not gateway settings: {unknown}"


def container_port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports[name])


def env_value(container: dict[str, Any], name: str) -> str | None:
    for item in container.get("env", []):
        if item["name"] == name:
            return item.get("value")
    return None


# -- docker compose ---------------------------------------------------------------------------


def test_compose_runs_replicas_behind_nginx_on_redis_and_postgresql() -> None:
    (compose,) = load_all(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert set(services) >= {"gateway", "nginx", "redis", "postgres"}

    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    gateway_args(gateway["command"])
    env = gateway["environment"]
    check_env_names(list(env))
    assert env["GATEWAY_QUEUE_URL"].startswith("redis://redis:")
    assert env["GATEWAY_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["GATEWAY_DATABASE_URL"]
    for name in ("GATEWAY_SECRET_KEY", "GATEWAY_ADMIN_TOKEN"):
        assert env[name].startswith("${") and ":?" in env[name], f"{name} must be required"
    # The values parse as the gateway's settings (with the ${...} placeholders filled in).
    filled = {k: re.sub(r"\$\{[^}]*\}", "x" * 40, str(v)) for k, v in env.items()}
    settings = Settings.from_mapping(filled)
    assert {str(p) for p in gateway["expose"]} == {
        str(settings.collect_port),
        str(settings.admin_port),
    }
    # nginx's address is on the compose network, which the gateway trusts as a proxy.
    subnet = ipaddress.ip_network(compose["networks"]["gateway"]["ipam"]["config"][0]["subnet"])
    assert any(n.supernet_of(subnet) for n in settings.trusted_proxies)

    redis = services["redis"]
    assert redis["command"][1:3] == ["--appendonly", "yes"]
    assert "--appendfsync" in redis["command"]
    assert services["postgres"]["environment"]["POSTGRES_DB"] in env["GATEWAY_DATABASE_URL"]
    for name in ("redis", "postgres"):
        assert gateway["depends_on"][name]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]


def test_nginx_balances_over_the_gateways_real_ports() -> None:
    (compose,) = load_all(DEPLOY / "docker-compose.yml")
    env = compose["services"]["gateway"]["environment"]
    conf = (DEPLOY / "nginx-lb.conf").read_text()
    assert f"server gateway:{env['GATEWAY_COLLECT_PORT']} resolve;" in conf
    assert f"server gateway:{env['GATEWAY_ADMIN_PORT']} resolve;" in conf
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf
    mounted = compose["services"]["nginx"]["volumes"][0].split(":")[0]
    assert (DEPLOY / mounted).resolve() == (DEPLOY / "nginx-lb.conf").resolve()


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_lb_conf_is_valid_nginx(tmp_path: Path) -> None:
    # `nginx -t` with the replicas' name pointed at loopback; this nginx may predate the
    # upstream `resolve` parameter (1.27.3), which the compose file's nginx image has.
    conf = (DEPLOY / "nginx-lb.conf").read_text().replace("gateway:", "127.0.0.1:")
    conf = conf.replace(" resolve;", ";")
    (tmp_path / "lb.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"
        f" events {{}} http {{ access_log off; include {tmp_path}/lb.conf; }}"
    )
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# -- Kubernetes -------------------------------------------------------------------------------


def test_kubernetes_manifests_have_every_part() -> None:
    kinds = {doc["kind"] for doc in k8s_objects()}
    assert kinds >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
        "ConfigMap",
    }


def test_deployment_probes_ports_commands_and_secrets() -> None:
    objects = k8s_objects()
    secret = next(o for o in objects if o["kind"] == "Secret")
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway"
    )
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    (container,) = pod["spec"]["containers"]
    gateway_args(container["args"])
    check_env_names([e["name"] for e in container["env"]])
    check_env_names(list(secret["stringData"]))

    collect = container_port(container, "collect")
    admin = container_port(container, "admin")
    assert collect == int(env_value(container, "GATEWAY_COLLECT_PORT") or DEFAULTS.collect_port)
    assert admin == int(env_value(container, "GATEWAY_ADMIN_PORT") or DEFAULTS.admin_port)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}

    # Secrets come from the Secret object, never inline values.
    for name in (
        "GATEWAY_SECRET_KEY",
        "GATEWAY_ADMIN_TOKEN",
        "GATEWAY_DATABASE_URL",
        "GATEWAY_QUEUE_URL",
    ):
        (item,) = [e for e in container["env"] if e["name"] == name]
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    settings = Settings.from_mapping(
        {
            **secret["stringData"],
            **{e["name"]: e["value"] for e in container["env"] if "value" in e},
        }
    )
    assert settings.queue_url is not None and settings.queue_url.startswith("redis://")
    assert settings.database_url is not None and settings.database_url.startswith("postgresql://")


def test_services_hpa_and_pdb_point_at_the_deployment() -> None:
    objects = k8s_objects()
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway"
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    services = [o for o in objects if o["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"gateway-collect", "gateway-admin"}
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    admin = next(s for s in services if s["metadata"]["name"] == "gateway-admin")
    assert admin["spec"]["type"] == "ClusterIP"  # the Management API is never public

    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "gateway")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = next(o for o in objects if o["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["minReplicas"] > pdb["spec"].get("maxUnavailable", 0)


def test_sidecar_runs_the_gateway_beside_the_web_container() -> None:
    objects = k8s_objects()
    shop = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "shop")
    containers = {c["name"]: c for c in shop["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"web", "gateway"}
    gateway = containers["gateway"]
    gateway_args(gateway["args"])
    check_env_names([e["name"] for e in gateway["env"]])
    collect = container_port(gateway, "collect")
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    nginx = config["data"]["default.conf"]
    assert f"proxy_pass http://127.0.0.1:{collect}/;" in nginx
    # The gateway believes that nginx by default (it is on loopback).
    assert any(str(n) == "127.0.0.1/32" for n in DEFAULTS.trusted_proxies)
    for probe in ("readinessProbe", "livenessProbe"):
        command = gateway[probe]["exec"]["command"]
        port = container_port(gateway, "admin")
        assert (
            f"http://127.0.0.1:{port}/{'readyz' if probe == 'readinessProbe' else 'healthz'}"
            in command[-1]
        )


def test_dockerfile_runs_the_real_command() -> None:
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["gateway"]' in dockerfile
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    gateway_args(yaml.safe_load(cmd))
    assert f"127.0.0.1:{DEFAULTS.admin_port}/healthz" in dockerfile
    assert re.search(r"^USER (?!root)", dockerfile, re.MULTILINE)
