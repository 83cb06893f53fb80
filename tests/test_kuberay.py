"""KubeRay manifests (``deploy/kuberay/``): a RayJob for a backfill and a RayCronJob for the
scheduled evaluation.

No Kubernetes cluster is reachable here, so the strongest offline check is KubeRay's own CRD
schemas (``../shared/schemas/kuberay/``, v1.7): each manifest's ``spec`` is validated with
jsonschema against the CRD's ``openAPIV3Schema`` (``x-kubernetes-*`` keys ignored), made strict
(unknown fields rejected, as ``kubectl apply --validate=strict`` does). The entrypoints run for
real: the manifest's entrypoint is submitted to a real Ray head, and a failing gate makes the
Ray job FAILED, which is what fails the RayJob."""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml

from rayeval.config import load_config
from tests.conftest import ROOT
from tests.synth import job_dict, make_frames, write_parquet

SCHEMAS = ROOT.parent / "shared" / "schemas" / "kuberay"
KUBERAY = ROOT / "deploy" / "kuberay"
#: vCPUs of the instance types cluster.yaml names
VCPUS = {"m6i.2xlarge": 8, "m6i.4xlarge": 16}


def crd_schema(name: str) -> dict:
    path = SCHEMAS / f"ray.io_{name}.yaml"
    if not path.exists():
        pytest.skip(f"{path} absent (the shared schemas sit beside the repository)")
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def strict(schema):
    """The schema without ``x-kubernetes-*`` keys, objects with listed properties closed to
    unknown fields (unless the CRD preserves unknown fields there)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if ("properties" in out and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def manifest(name: str) -> dict:
    return yaml.safe_load((KUBERAY / name).read_text())


def errors(schema: dict, spec: dict) -> list[str]:
    import jsonschema

    v = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(spec)]


def job_specs() -> dict[str, dict]:
    return {"backfill": manifest("rayjob-backfill.yaml")["spec"],
            "scheduled": manifest("raycronjob-scheduled.yaml")["spec"]["jobTemplate"]}


def test_manifests_validate_against_kuberay_crds():
    job = manifest("rayjob-backfill.yaml")
    cron = manifest("raycronjob-scheduled.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert (cron["apiVersion"], cron["kind"]) == ("ray.io/v1", "RayCronJob")
    assert errors(crd_schema("rayjobs"), job["spec"]) == []
    assert errors(crd_schema("raycronjobs"), cron["spec"]) == []


@pytest.mark.parametrize("mutate, needle", [
    (lambda s: s.update(shutdownAfterJobFinish=True), "shutdownAfterJobFinish"),
    (lambda s: s.update(backoffLimit="0"), "backoffLimit"),
    (lambda s: s["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName"), "groupName"),
    (lambda s: s["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 8}),
     "rayStartParams"),
])
def test_schema_check_catches_mistakes(mutate, needle):
    spec = copy.deepcopy(manifest("rayjob-backfill.yaml")["spec"])
    mutate(spec)
    found = errors(crd_schema("rayjobs"), spec)
    assert found and any(needle in e for e in found), found


def test_jobs_entrypoints_runtime_env_and_sizing():
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    nodes = cluster["available_node_types"]
    head_vcpus = VCPUS[nodes[cluster["head_node_type"]]["node_config"]["InstanceType"]]
    worker = nodes["cpu_worker"]
    specs = job_specs()
    assert specs["backfill"]["rayClusterSpec"] == specs["scheduled"]["rayClusterSpec"]
    for kind, spec in specs.items():
        argv = shlex.split(spec["entrypoint"])
        assert argv[:2] == ["python", f"jobs/{kind}.py"] and (ROOT / argv[1]).exists()
        load_config(ROOT / argv[argv.index("--config") + 1])  # the config it names is valid
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert env["working_dir"] == "/home/ray/rayeval"  # where the Dockerfile puts the repo
        assert "/home/ray/rayeval" in (KUBERAY / "Dockerfile").read_text()
        assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 0
        rc = spec["rayClusterSpec"]
        head = rc["headGroupSpec"]
        assert int(head["rayStartParams"]["num-cpus"]) == head_vcpus
        (group,) = rc["workerGroupSpecs"]
        assert int(group["rayStartParams"]["num-cpus"]) == VCPUS[
            worker["node_config"]["InstanceType"]]
        assert (group["minReplicas"], group["maxReplicas"]) == (worker["min_workers"],
                                                                worker["max_workers"])
        assert rc["rayVersion"] == "2.60.0" and rc["enableInTreeAutoscaling"] is True
        for c in [*head["template"]["spec"]["containers"],
                  *group["template"]["spec"]["containers"]]:
            assert c["image"] == "rayeval:0.1.0"
    assert manifest("raycronjob-scheduled.yaml")["spec"]["schedule"] == "0 6 * * *"


@pytest.mark.slow
def test_failed_gate_fails_the_ray_job(ray_head, tmp_path):
    """The backfill manifest's entrypoint and runtime env, pointed at a small dataset with a
    gate no model passes, submitted to a real Ray head (``ray job submit``, as KubeRay's
    submitter does): the Ray job ends FAILED with the run's exit code 1, which is what fails
    the RayJob; the results (the verdict) were written."""
    import json
    import subprocess

    import pandas as pd

    from tests.conftest import BIN

    preds, labels = make_frames(2000, seed=5)
    write_parquet(preds, tmp_path / "preds", 1)
    write_parquet(labels, tmp_path / "labels", 1)
    job = job_dict(str(tmp_path / "preds"), str(tmp_path / "labels"), str(tmp_path / "out"),
                   gates=[{"name": "impossible", "task": "clf", "metric": "accuracy",
                           "min": 0.999}])
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))
    spec = job_specs()["backfill"]
    argv = shlex.split(spec["entrypoint"])
    for flag, value in (("--config", str(cfg)), ("--start", "2024-01-08"),
                        ("--end", "2024-01-15")):
        argv[argv.index(flag) + 1] = value
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    env.update(working_dir=str(ROOT), excludes=["examples/flights/data/", ".venv-airflow/"])
    r = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", ray_head["address"],
                        "--runtime-env-json", json.dumps(env), "--", *argv],
                       env=ray_head["env"], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "failed" in out.lower() and "exit code 1" in out, out[-3000:]
    gates = pd.read_parquet(tmp_path / "out" / "gates")
    assert len(gates) and not gates["passed"].any()
