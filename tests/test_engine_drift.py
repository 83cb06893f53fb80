"""Drift through the engine: reference passes + current scan on a real local Ray, checked against
scipy on the raw rows, and an injected shift is flagged while stationary columns are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.stats import chi2_contingency, ks_2samp

from rayeval.config import load_config
from rayeval.engine.run import run_job
from tests.synth import job_dict, make_frames, write_parquet


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    d = tmp_path_factory.mktemp("drift")
    preds, labels = make_frames(8000, seed=5)
    rng = np.random.default_rng(5)
    preds["hour"] = rng.integers(0, 24, len(preds))  # integer feature: exact binning layout
    late = preds["timestamp"] >= pd.Timestamp("2024-01-15", tz="UTC")
    preds.loc[late, "feature_x"] += 0.6  # injected shift in the third week
    preds.loc[late, "hour"] = np.minimum(preds.loc[late, "hour"] + 3, 23)
    write_parquet(preds, d / "preds", 3)
    write_parquet(labels, d / "labels", 1)
    return d, preds


def run(d, tmp_path, reference):
    data = job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "out"))
    data["drift"] = {"enabled": True, "reference": reference,
                     "features": [{"name": "feature_x", "kind": "numeric"},
                                  {"name": "hour", "kind": "numeric"},
                                  {"name": "band", "kind": "categorical"}]}
    data["windows"] = {"size": "week", "start": "2024-01-08"}
    return run_job(load_config(data=data))


def test_injected_shift_flagged_and_matches_scipy(ray_local, shifted, tmp_path):
    d, preds = shifted
    res = run(d, tmp_path, {"kind": "time_range", "start": "2024-01-01", "end": "2024-01-08"})
    dr = res.drift
    ov = dr[(dr.slice == "overall") & (dr.kind == "feature")]
    # one verdict row per model, window, slice and column
    assert not dr.duplicated(["model", "window_start", "slice", "kind", "feature"]).any()
    flagged = {(r.feature, str(r.window_start.date())): r.drifted for r in ov.itertuples()}
    for model in ("champion", "challenger"):
        assert flagged[("feature_x", "2024-01-15")] and flagged[("hour", "2024-01-15")]
        assert not flagged[("feature_x", "2024-01-08")] and not flagged[("band", "2024-01-15")]
    # exact layout (24 distinct hours): KS equals scipy on the raw rows
    m = preds[preds.model == "champion"]
    ref = m[m.timestamp < pd.Timestamp("2024-01-08", tz="UTC")].hour
    cur = m[m.timestamp >= pd.Timestamp("2024-01-15", tz="UTC")].hour
    ks = dr[(dr.model == "champion") & (dr.feature == "hour")
            & (dr.slice == "overall") & (dr.window_start == pd.Timestamp("2024-01-15", tz="UTC"))]
    assert ks.info_ks_statistic.iloc[0] == pytest.approx(ks_2samp(ref, cur).statistic,
                                                         abs=1e-12)
    assert ks.info_ks_error_bound.iloc[0] == 0.0 and ks.error_bound.iloc[0] == 0.0
    # categorical chi-squared equals scipy's contingency test (no Yates correction)
    bref = m[m.timestamp < pd.Timestamp("2024-01-08", tz="UTC")].band.value_counts()
    bcur = m[m.timestamp >= pd.Timestamp("2024-01-15", tz="UTC")].band.value_counts()
    table = np.array([bref.reindex(["hi", "lo"]).to_numpy(), bcur.reindex(["hi", "lo"]).to_numpy()])
    chi = dr[(dr.model == "champion") & (dr.feature == "band")
             & (dr.slice == "overall") & (dr.window_start == pd.Timestamp("2024-01-15", tz="UTC"))]
    assert chi.info_chi2_statistic.iloc[0] == pytest.approx(
        chi2_contingency(table, correction=False).statistic, rel=1e-9)
    # outputs: drift table written, gates on dataset drift share computable
    written = pd.read_parquet(tmp_path / "out" / "drift")
    assert len(written) == len(dr)
    q = dr[dr.feature == "feature_x"]
    assert len(q) and (q.missing_rate == 0).all()


def test_previous_window_reference(ray_local, shifted, tmp_path):
    d, _ = shifted
    res = run(d, tmp_path, {"kind": "previous_window"})
    dr = res.drift
    ov = dr[(dr.slice == "overall") & (dr.feature == "feature_x")]
    # week 2 vs week 1 stationary, week 3 vs week 2 shifted
    by_week = {str(r.window_start.date()): r.drifted for r in ov.itertuples()}
    assert by_week["2024-01-15"] and not by_week.get("2024-01-08", False)
    assert set(ov.reference_window) <= {"2024-01-01", "2024-01-08"}


def test_learned_thresholds_and_dataset_drift(ray_local, shifted, tmp_path):
    d, preds = shifted
    data = job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "out"))
    data["drift"] = {"enabled": True, "learned_thresholds": True, "learned_chunk": "day",
                     "reference": {"kind": "time_range", "start": "2024-01-01",
                                   "end": "2024-01-08"},
                     "features": [{"name": "feature_x", "kind": "numeric"},
                                  {"name": "band", "kind": "categorical"}],
                     "dataset_drift_share": 0.5}
    data["windows"] = {"size": "week", "start": "2024-01-08"}
    data["gates"] = [{"name": "no-dataset-drift", "metric": "dataset_drift_share", "max": 0.4}]
    res = run_job(load_config(data=data))
    dr = res.drift
    fx = dr[(dr.feature == "feature_x") & (dr.slice == "overall")]
    # learned threshold: mean + 3 std of daily reference chunks vs the whole reference
    # one per model (both models score the same rows here, and the binning is deterministic,
    # so the two thresholds are equal)
    assert (fx.threshold > 0).all() and (fx.groupby("model").threshold.nunique() == 1).all()
    # oracle: scipy's statistic of each daily reference chunk against the whole reference
    # (the engine's comes from histograms, within their error bound)
    from scipy.stats import wasserstein_distance

    assert set(fx.method) == {"wasserstein_normed"}
    ref = preds[(preds.model == "champion") & (preds.timestamp < pd.Timestamp(
        "2024-01-08", tz="UTC"))]
    x = ref.feature_x.to_numpy()
    stats = [wasserstein_distance(c.feature_x, x) / np.std(x)
             for _, c in ref.groupby(ref.timestamp.dt.floor("D"))]
    expected = np.mean(stats) + 3 * np.std(stats)
    got = fx[fx.model == "champion"].threshold.iloc[0]
    assert abs(got - expected) <= 0.02 * expected and abs(got - 0.1) > 0.02  # not the default
    assert (fx.drifted == (fx.statistic > fx.threshold)).all()
    by_week = {(r.model, str(r.window_start.date())): r.drifted for r in fx.itertuples()}
    assert by_week[("champion", "2024-01-15")] and not by_week[("champion", "2024-01-08")]
    ds = dr[(dr.kind == "dataset") & (dr.slice == "overall")]
    w3 = ds[ds.window_start == pd.Timestamp("2024-01-15", tz="UTC")]
    assert (w3.statistic == 0.5).all() and w3.drifted.all()  # 1 of 2 features drifted
    g = res.gates
    assert not g[g.window_start == pd.Timestamp("2024-01-15", tz="UTC")].passed.any()
    assert g[g.window_start == pd.Timestamp("2024-01-08", tz="UTC")].passed.all()


def test_all_null_feature_reported_not_dropped(ray_local, tmp_path):
    preds, labels = make_frames(3000, seed=9)
    preds["empty_feature"] = np.nan
    write_parquet(preds, tmp_path / "preds", 2)
    write_parquet(labels, tmp_path / "labels", 1)
    data = job_dict(str(tmp_path / "preds"), str(tmp_path / "labels"), str(tmp_path / "out"))
    data["drift"] = {"enabled": True, "slices": False, "reference": {
        "kind": "time_range", "start": "2024-01-01", "end": "2024-01-08"},
        "features": [{"name": "empty_feature", "kind": "numeric"}]}
    data["windows"] = {"size": "week", "start": "2024-01-08"}
    dr = run_job(load_config(data=data)).drift
    e = dr[dr.feature == "empty_feature"]
    assert (e.missing_rate == 1.0).all() and len(e) > 0
    assert e.undefined_reason.notna().all() and not e.drifted.any()


@pytest.mark.slow
def test_reference_inside_scan_skips_a_pass_and_matches_separate_pass(ray_local, shifted,
                                                                     tmp_path, monkeypatch):
    """A time-range reference gets its histograms from the scan (one reference pass, the
    profiles, instead of two), inside the evaluated range or outside it (those rows then feed
    drift only), with the same drift rows as a separate reference dataset of those rows."""
    from rayeval.engine import ray_runner

    d, _ = shifted
    sources: list[str] = []
    aggregate = ray_runner.aggregate

    def counting(plan, info, columns, source, **kw):
        sources.append(source)
        return aggregate(plan, info, columns, source, **kw)

    monkeypatch.setattr(ray_runner, "aggregate", counting)

    def job(start: str, out: str) -> pd.DataFrame:
        data = job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / out))
        data["drift"] = {"enabled": True, "learned_thresholds": True,
                         "reference": {"kind": "time_range", "start": "2024-01-01",
                                       "end": "2024-01-08"},
                         "features": [{"name": "hour", "kind": "numeric"},
                                      {"name": "band", "kind": "categorical"}]}
        data["windows"] = {"size": "week", "start": start}
        return run_job(load_config(data=data)).drift

    inside = job("2024-01-01", "inside")
    assert sources == ["reference", "current"]
    sources.clear()
    apart = job("2024-01-08", "apart")
    assert sources == ["reference", "current"]
    # every layout is deterministic (exact, categorical and quantile edges alike)
    key = ["model", "window_start", "slice", "kind", "feature"]
    cols = ["statistic", "p_value", "threshold", "drifted", "error_bound", "n_reference",
            "n_current"]
    assert set(apart.feature) > {"hour", "band"}  # also the score's quantile bins
    a = apart.set_index(key).sort_index()
    b = inside.set_index(key).loc[a.index]
    assert len(a) > 20 and (a.index.get_level_values("kind") == "feature").any()
    assert a.n_reference.notna().any()
    pd.testing.assert_frame_equal(a[cols], b[cols], rtol=1e-9)
    assert (inside.window_start == pd.Timestamp("2024-01-01", tz="UTC")).any()


@pytest.mark.slow
def test_dataset_reference_with_sliced_drift_matches_time_range(ray_local, shifted, tmp_path):
    """A separate reference dataset holding the same rows as a time-range reference (without
    the id column, so without labels) gives the same feature and prediction drift, per slice
    too: the reference passes read the slice columns when drift is sliced."""
    d, preds = shifted
    ref_rows = preds[preds.timestamp < pd.Timestamp("2024-01-08", tz="UTC")]
    write_parquet(ref_rows.drop(columns=["id"]), tmp_path / "ref", 2)
    by_range = run(d, tmp_path / "a", {"kind": "time_range", "start": "2024-01-01",
                                       "end": "2024-01-08"}).drift
    by_dataset = run(d, tmp_path / "b", {"kind": "dataset", "uri": str(tmp_path / "ref")}).drift
    key = ["model", "window_start", "slice", "kind", "feature"]
    cols = ["statistic", "p_value", "drifted", "error_bound", "n_reference", "n_current"]
    a = by_range[by_range.kind.isin(["feature", "prediction"])].set_index(key).sort_index()
    b = by_dataset.set_index(key).loc[a.index]
    assert a.slice_columns.notna().any() and a.n_reference.notna().any()
    pd.testing.assert_frame_equal(a[cols], b[cols], rtol=1e-9)


@pytest.mark.slow
def test_reference_dataset_without_model_timestamp_weight(ray_local, shifted, tmp_path):
    """A reference dataset with only feature columns (a training set: no id, model or
    timestamp column) is every model's reference: the champion's feature drift against the
    champion's early rows as a dataset equals that against the same rows as a time range."""
    d, _ = shifted
    preds = pd.read_parquet(d / "preds")  # the rows the time-range reference reads
    early = preds.timestamp < pd.Timestamp("2024-01-08", tz="UTC")
    champion = preds[early & (preds.model == "champion")]
    write_parquet(champion[["feature_x", "hour", "band", "segment"]], tmp_path / "ref", 2)
    by_range = run(d, tmp_path / "a", {"kind": "time_range", "start": "2024-01-01",
                                       "end": "2024-01-08"}).drift
    res = run(d, tmp_path / "b", {"kind": "dataset", "uri": str(tmp_path / "ref")})
    by_dataset = res.drift
    warned = "\n".join(res.manifest["warnings"])
    assert "prediction drift of 'score' is not reported" in warned
    assert "no 'id' id column to join the labels" in warned
    key = ["window_start", "slice", "kind", "feature"]
    cols = ["statistic", "p_value", "drifted", "error_bound", "n_reference", "n_current"]
    want = by_range[(by_range.kind == "feature") & (by_range.model == "champion")]
    want = want.set_index(key).sort_index()
    got = by_dataset[(by_dataset.kind == "feature") & (by_dataset.model == "champion")]
    got = got.set_index(key).loc[want.index]
    assert len(got) > 20
    pd.testing.assert_frame_equal(got[cols], want[cols], rtol=1e-9)
    # the challenger is compared with the same (champion) reference
    ch = by_dataset[(by_dataset.kind == "feature") & (by_dataset.model == "challenger")]
    overall = ch[ch.slice == "overall"].n_reference.dropna()
    assert len(ch) == len(got) and len(overall) and (overall == len(champion)).all()
    # no score or predicted class in that reference: prediction drift is not reported
    assert not (by_dataset.kind == "prediction").any()


def test_arrow_factorisation_matches_numpy_path():
    from rayeval.engine.drift_plan import _factorize_arrow

    cols = [pa.chunked_array([pa.array(["b", None, "a"]), pa.array(["a", "c"])]),
            pa.chunked_array([pa.array([3, None, 1, 3], pa.int32())]),
            pa.chunked_array([pa.array(["x", "y", "x"]).dictionary_encode(),
                              pa.array(["z", "x"]).dictionary_encode()]),
            pa.chunked_array([], pa.large_string())]
    for col in cols:
        f = _factorize_arrow(col)
        got = [None if c < 0 else f.uniques[c] for c in f.codes]
        assert got == col.to_pylist() and len(set(f.uniques)) == len(f.uniques)
        assert [type(v) for v in got] == [type(v) for v in col.to_pylist()]
    assert _factorize_arrow(pa.chunked_array([pa.array([1.5, None])])) is None  # numpy path


def test_configured_edges_and_js_base(ray_local, shifted, tmp_path):
    """A feature's configured ``edges`` (widened to the reference's min and max) replace the
    reference quantiles; ``js_base`` sets the Jensen-Shannon log base (oracle: scipy's
    ``jensenshannon`` on the written bin shares, and on the raw values binned by
    ``np.searchsorted``); Wasserstein stays within its bound of scipy's."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    d, preds = shifted
    data = job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "out"))
    edges = [-1.0, 0.0, 1.0]
    data["drift"] = {"enabled": True, "slices": False, "js_base": float(np.e),
                     "reference": {"kind": "time_range", "start": "2024-01-01",
                                   "end": "2024-01-08"},
                     "features": [{"name": "feature_x", "kind": "numeric", "edges": edges,
                                   "method": "jensen_shannon"}]}
    data["windows"] = {"size": "week", "start": "2024-01-08"}
    res = run_job(load_config(data=data))
    h = pd.read_parquet(tmp_path / "out" / "drift_histograms")
    h = h[(h.feature == "feature_x") & (h.model == "champion")]
    dr = res.drift
    js = dr[(dr.feature == "feature_x") & (dr.method == "jensen_shannon")
            & (dr.model == "champion") & (dr.slice == "overall")]
    ref = preds[(preds.model == "champion")
                & (preds.timestamp < pd.Timestamp("2024-01-08", tz="UTC"))].feature_x
    assert ref.min() < edges[0] and ref.max() > edges[-1]
    edges = [ref.min()] + edges + [ref.max()]  # widened to the reference range
    for r in js.itertuples():
        part = h[h.window_start == r.window_start].sort_values("bin")
        assert len(part) == len(edges) + 1  # under, the inner bins, over
        assert abs(r.statistic - jensenshannon(part.reference, part.current, base=np.e)) < 1e-9
        cur = preds[(preds.model == "champion") & (preds.timestamp >= r.window_start)
                    & (preds.timestamp < r.window_end)].feature_x

        def shares(x):
            b = np.searchsorted(edges, x, side="right")
            b[x == edges[-1]] = len(edges) - 1  # the last inner bin is closed
            return np.bincount(b, minlength=len(edges) + 1) / len(x)

        expect = jensenshannon(shares(ref.to_numpy()), shares(cur.to_numpy()), base=np.e)
        assert abs(r.statistic - expect) < 1e-9
        exact = wasserstein_distance(ref, cur) / np.std(ref)
        assert abs(r.info_wasserstein_normed - exact) <= r.info_wasserstein_normed_error_bound \
            + 1e-9
    assert len(js) == 2  # the windows of 2024-01-08 and 2024-01-15


def test_continuous_column_declared_categorical_is_warned(ray_local, shifted, tmp_path):
    """A float column declared categorical: every value is its own category, the top-k bins
    hold ~0% of the reference, so drift would compare 'other' with 'other': a manifest
    warning, and unseen_share undefined rather than 1.0 "drifted" in every window."""
    d, _ = shifted
    data = job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "out"))
    data["drift"] = {"enabled": True, "slices": False, "predictions": False, "labels": False,
                     "reference": {"kind": "time_range", "start": "2024-01-01",
                                   "end": "2024-01-08"},
                     "features": [{"name": "feature_x", "kind": "categorical"},
                                  {"name": "band", "kind": "categorical"}]}
    data["windows"] = {"size": "week", "start": "2024-01-08"}
    res = run_job(load_config(data=data))
    warned = [w for w in res.manifest["warnings"] if "'feature_x'" in w]
    assert len(warned) == 2 and "declare it numeric" in warned[0]  # one per model
    assert not any("'band'" in w for w in res.manifest["warnings"])
    u = res.drift[res.drift.feature == "feature_x"]
    assert len(u) and u.info_unseen_share.isna().all()
