"""What ops deploy: the Kubernetes overlays, the image, the alert rules and the dashboard,
checked by the tools ops would run (kubectl kustomize, kubernetes-validate, checkov,
hadolint, promtool) and by a real Prometheus scraping a real server."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from serving.client import RecurClient
from serving.process import ServerProcess, free_port
from serving.server import build_parser, load_configs

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.34.0"
MODEL = "toy-en-fr"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run the suite with bash scripts/test.sh, which "
                    "installs it (scripts/ops-tools.sh)")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)


def render(kustomization: Path) -> str:
    result = run(tool("kubectl"), "kustomize", kustomization)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rules_file(directory: Path) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rules file."""
    manifest = yaml.safe_load((K8S / "base" / "prometheusrule.yaml").read_text())
    path = directory / "recur.rules.yml"
    path.write_text(yaml.safe_dump(manifest["spec"]))
    return path


def checked(kustomization: Path, tmp_path: Path) -> list[dict]:
    """Renders a kustomization, validates it strictly, runs checkov; the documents."""
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render(kustomization))
    validate = run(tool("kubernetes-validate"), "--strict", "--quiet", "--kubernetes-version",
                   KUBERNETES_VERSION, rendered)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    checkov = run(tool("checkov"), "--file", rendered, "--framework", "kubernetes",
                  "--skip-download", "--output", "json")
    report = json.loads(checkov.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and checkov.returncode == 0, failed
    # the only suppression: image digests, which a release pins
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {"CKV_K8S_43"}, skipped
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    assert {d["metadata"].get("namespace", "recur") for d in docs} == {"recur"}
    return docs


def with_component(overlay: str, component: str, tmp_path: Path) -> Path:
    """A kustomization in tmp_path: `overlay` plus `component` (paths under k8s/)."""
    directory = tmp_path / "with-component"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / overlay, directory)],
        "components": [os.path.relpath(K8S / component, directory)]}))
    return directory


@pytest.mark.parametrize("overlay", ["cpu", "gpu", "cpu-tls"])
def test_server_overlays_render_to_valid_manifests_that_checkov_passes(overlay, tmp_path):
    docs = checked(K8S / "overlays" / overlay, tmp_path)
    assert not [d for d in docs if d["kind"] == "Job"]  # training is applied on its own
    (server,) = [d for d in docs if d["kind"] == "Deployment"]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert "replicas" not in server["spec"]  # the autoscaler's, not reset by an apply
    pod = server["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # the server's own loader accepts the ConfigMap's settings, and the pod outlives the drain
    config_path = tmp_path / "recur.toml"
    config_path.write_text(config_map["data"]["recur.toml"])
    config, _, _, _ = load_configs(build_parser().parse_args(["--config", str(config_path)]))
    assert config.model_base_path == "/models"
    assert config.wait_for_models  # pods started before the first export wait, not crash
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + config.grace_seconds
    assert config_map["metadata"]["name"] in {v.get("configMap", {}).get("name")
                                              for v in pod["volumes"]}
    # waiting for a first model (or loading a big one) is alive, not a failed start
    probes = {p: container[p]["grpc"] for p in ("startupProbe", "readinessProbe",
                                                "livenessProbe")}
    assert probes["startupProbe"]["service"] == probes["livenessProbe"]["service"] == "liveness"
    assert "service" not in probes["readinessProbe"]
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    if overlay == "gpu":
        assert gpus == 1 and pod["tolerations"] and pod["nodeSelector"]
    else:
        assert gpus is None and "tolerations" not in pod
    probe_ports = {probe["port"] for probe in probes.values()}
    if overlay == "cpu-tls":  # kubelet probes cannot speak TLS: they use the health port
        env = {e["name"]: e["value"] for e in container["env"]}
        assert probe_ports == {int(env["RECUR_HEALTH_PORT"])} == {8502}
        assert env["RECUR_TLS_CERT_FILE"].startswith("/etc/recur-tls/")
    else:
        assert probe_ports == {config.port}


def test_queue_depth_autoscaling_adds_the_servers_metric(tmp_path):
    docs = checked(with_component("overlays/cpu", "components/queue-depth-autoscaling",
                                  tmp_path), tmp_path)
    (autoscaler,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    kinds = {m["type"]: m for m in autoscaler["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "recur_queue_depth"  # metrics.py's


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_training_jobs_render_to_valid_manifests_that_checkov_passes(variant, tmp_path):
    docs = checked(K8S / "training" / variant, tmp_path)
    jobs = [d for d in docs if d["kind"] == "Job"]
    assert len(jobs) == 2 and all(job["spec"]["suspend"] for job in jobs)  # start one
    for job in jobs:
        limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits.get("nvidia.com/gpu") == (1 if variant == "gpu" else None)
    # the multi-worker Job's --workers are its own pods' DNS names, one per index
    (multi,) = [d for d in jobs if d["spec"].get("completionMode") == "Indexed"]
    spec, args = multi["spec"], multi["spec"]["template"]["spec"]["containers"][0]["args"]
    subdomain = spec["template"]["spec"]["subdomain"]
    (service,) = [d for d in docs if d["kind"] == "Service"
                  and d["metadata"]["name"] == subdomain]
    assert service["spec"]["selector"] == {"job-name": multi["metadata"]["name"]}
    assert args[args.index("--workers") + 1].split(",") == [
        f"{multi['metadata']['name']}-{i}.{subdomain}:2222" for i in range(spec["completions"])]
    assert spec["parallelism"] == spec["completions"] and "--worker-index" not in args
    # the two Jobs never share a run directory (checkpoints)
    run_dirs = {a[a.index("--run-dir") + 1] for a in (
        job["spec"]["template"]["spec"]["containers"][0]["args"] for job in jobs)}
    assert len(run_dirs) == 2


def test_the_dockerfile_passes_hadolint_and_checkov():
    dockerfile = ROOT / "docker" / "Dockerfile"
    hadolint = run(tool("hadolint"), dockerfile)
    assert hadolint.returncode == 0, hadolint.stdout + hadolint.stderr
    checkov = run(tool("checkov"), "--file", dockerfile, "--framework", "dockerfile",
                  "--skip-download", "--output", "json")
    report = json.loads(checkov.stdout)
    assert report["results"]["failed_checks"] == [] and checkov.returncode == 0
    # the serving image runs as a non-root user and carries no training extra
    serving = dockerfile.read_text().split("AS serving", 1)[1].split("FROM ", 1)[0]
    assert "USER 10001" in serving and "[train]" not in serving


def test_the_server_runs_without_the_training_extras():
    # the serving image installs recur without [train]: every model kind must still load
    code = """
import sys
for name in ("sacrebleu", "tqdm", "matplotlib", "tensorboard"):
    sys.modules[name] = None  # importing it fails, as in the serving image
import serving.server
from serving.tasks import load_tasks
print(",".join(sorted(load_tasks([]))))
"""
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["caption,charlm,tag,translate"]


def test_alert_rules_pass_promtool_and_their_unit_tests(tmp_path):
    rules = rules_file(tmp_path)
    check = run(tool("promtool"), "check", "rules", rules)
    assert check.returncode == 0, check.stdout + check.stderr
    shutil.copy(K8S / "monitoring" / "alerts-test.yaml", tmp_path)
    unit = run(tool("promtool"), "test", "rules", tmp_path / "alerts-test.yaml")
    assert unit.returncode == 0, unit.stdout + unit.stderr


class Prometheus:
    """A real Prometheus on a free localhost port, with its own config and data."""

    def __init__(self, directory: Path, scrape_target: str, rules: Path):
        self.url = f"http://127.0.0.1:{free_port()}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(rules)],
                  "scrape_configs": [{"job_name": "recur-server",
                                      "static_configs": [{"targets": [scrape_target]}]}]}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def poll(self, what: str, condition, seconds: float = 90.0):
        """Polls `condition()` until it returns something truthy (scrapes come every 1 s,
        the first after a few)."""
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            try:
                if found := condition():
                    return found
            except OSError:  # not listening yet
                pass
            time.sleep(0.5)
        targets = [(t["health"], t["lastError"])
                   for t in self.api("targets")["activeTargets"]]
        raise AssertionError(f"Prometheus never saw {what}; its targets: {targets}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


@pytest.mark.slow
def test_prometheus_scrapes_a_real_server_and_the_load_failure_alert_fires(tiny_export,
                                                                             tmp_path):
    _, exports = tiny_export
    base = tmp_path / "exports"
    shutil.copytree(exports / MODEL / "1", base / MODEL / "1")
    server = ServerProcess(base, "--poll-seconds", "0.3")
    prometheus = Prometheus(tmp_path, server.metrics_url.split("/")[2], rules_file(tmp_path))
    try:
        server.wait_until_serving()
        prometheus.poll("the server", lambda: prometheus.query("recur_models_serving == 1"))

        def translate_and_query(expr: str) -> list[dict]:
            """Real traffic while Prometheus scrapes: a rate needs two scrapes of it."""
            with RecurClient(server.target) as client:
                for _ in range(5):
                    assert client.translate(["four five"], MODEL).model_version == 1
            return [r for r in prometheus.query(expr) if math.isfinite(float(r["value"][1]))]

        rate = prometheus.poll("a request rate", lambda: translate_and_query(
            'sum(rate(recur_requests_total{job="recur-server", method="Translate", '
            'code="OK"}[30s])) > 0'))
        assert float(rate[0]["value"][1]) > 0
        p99 = prometheus.poll("a p99 latency", lambda: translate_and_query(
            'histogram_quantile(0.99, sum by (le) (rate(recur_request_duration_seconds_'
            'bucket{job="recur-server", method="Translate"}[30s])))'))
        assert 0 < float(p99[0]["value"][1]) < 60
        # every dashboard query is one Prometheus accepts
        dashboard = json.loads((K8S / "monitoring" / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$namespace", ".*").replace(
                    "$__rate_interval", "30s")
                prometheus.query(expr)
        assert "RecurModelLoadFailed" not in firing(prometheus)
        # a corrupt version 2 is published: version 1 keeps serving, the alert fires
        staging = base / MODEL / ".staging-2"
        shutil.copytree(base / MODEL / "1", staging)
        (staging / "saved_model.pb").write_bytes(b"\x00 truncated")
        os.rename(staging, base / MODEL / "2")
        alerts = prometheus.poll("RecurModelLoadFailed firing", lambda: firing(prometheus))
        assert alerts["RecurModelLoadFailed"]["model"] == MODEL
        assert "RecurServerDown" not in alerts and "RecurNoModelServing" not in alerts
        with RecurClient(server.target) as client:
            assert client.translate(["four five"], MODEL).model_version == 1
    finally:
        prometheus.stop()
        assert server.stop() == 0


def firing(prometheus: Prometheus) -> dict[str, dict]:
    """Alert name -> labels of the alerts firing now."""
    return {a["labels"]["alertname"]: a["labels"] for a in prometheus.api("alerts")["alerts"]
            if a["state"] == "firing"}
