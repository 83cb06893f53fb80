"""A weight column present in some prediction files and absent from others: an error naming
the files (default), or ``policy.missing_weight: weight_one`` with those rows weighing 1 and a
warning; never a third of the rows silently excluded as ``nonfinite_weight``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import mean_absolute_error, roc_auc_score

from rayeval.config import load_config
from rayeval.engine.run import run_job
from rayeval.io.readers import InputError
from tests.synth import job_dict, make_frames


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    preds, labels = make_frames(3000, seed=4)
    preds = preds.merge(labels.drop_duplicates("id", keep="last"), on="id")
    rng = np.random.default_rng(4)
    preds["w"] = rng.uniform(0.5, 2.0, len(preds))
    parts = np.array_split(np.arange(len(preds)), 3)
    (d / "preds").mkdir()
    for i, idx in enumerate(parts):
        part = preds.iloc[idx]
        if i == 2:  # the last file has no weight column
            part = part.drop(columns=["w"])
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                       d / "preds" / f"part-{i}.parquet")
    preds.loc[preds.index[parts[2]], "w"] = 1.0  # what weight_one means
    return d, preds


def config(d, **policy):
    data = job_dict(str(d / "preds"), None, str(d / f"out-{len(policy)}"),
                    windows={"size": "none"})
    data["columns"]["weight"] = "w"
    if policy:
        data["policy"] = policy
    return load_config(data=data)


def test_absent_weight_column_fails_naming_the_files(ray_local, files):
    d, _ = files
    with pytest.raises(InputError, match=r"weight column 'w' is absent from 1 of 3 files .*"
                                         r"part-2\.parquet.*policy\.missing_weight"):
        run_job(config(d))


def test_weight_one_policy_weighs_those_rows_one(ray_local, files):
    d, preds = files
    res = run_job(config(d, missing_weight="weight_one"))
    assert any("weigh 1" in w and "part-2.parquet" in w for w in res.manifest["warnings"])
    assert not any(k.endswith("nonfinite_weight") for k in
                   res.manifest["row_counts"]["invalid"])
    m = res.finalized.metrics
    ov = m[(m.slice == "overall") & m.class_label.isna()]
    for model, part in preds.groupby("model"):
        got = ov[ov.model == model].set_index(["task", "metric"])["value"]
        assert got[("reg", "mae")] == pytest.approx(mean_absolute_error(
            part.target, part.predicted_value, sample_weight=part.w), rel=1e-9)
        assert got[("clf", "roc_auc")] == pytest.approx(roc_auc_score(
            part.label, part.score, sample_weight=part.w), abs=1e-4)
