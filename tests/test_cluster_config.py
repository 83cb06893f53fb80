"""``cluster.yaml`` checked offline against the cluster launcher schema shipped in the installed
Ray wheel (``ray/autoscaler/ray-schema.json``; unknown keys are rejected), plus the
cross-field rules ``ray up`` applies after the schema (``ray up`` itself needs a cloud)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_ray_schema(schema, cluster):
    jsonschema.validate(cluster, schema)


def test_schema_is_strict(schema, cluster):
    """The check has teeth: a misspelt key or a wrong type is rejected."""
    bad = copy.deepcopy(cluster)
    bad["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(cluster)
    bad["available_node_types"]["cpu_worker"]["min_workers"] = "zero"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_cluster_yaml_cross_field_rules(cluster):
    types = cluster["available_node_types"]
    assert cluster["head_node_type"] in types
    for name, t in types.items():
        assert t.get("min_workers", 0) <= t.get("max_workers", cluster["max_workers"]) \
            <= cluster["max_workers"], name
    assert "node_config" in types[cluster["head_node_type"]]
    # the repository is synced to the nodes without the venv and local outputs
    assert "." in cluster["file_mounts"].values()
    assert ".venv" in cluster["rsync_exclude"]
