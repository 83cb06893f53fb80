"""The HTML report: structure, escaping, empty inputs, bounded size on a large synthetic run, and
a headless Chromium render (DOM dump and screenshot)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from rayeval.io.report import render_report

RUN = "run-2024-test"
EVIL = '<script>alert("x")</script>&'
BINARY = {"roc_auc": "higher_is_better", "pr_auc": "higher_is_better", "f1": "higher_is_better",
          "ece": "lower_is_better", "accuracy": "higher_is_better", "log_loss": "lower_is_better",
          "brier_loss": "lower_is_better", "n_rows": "neutral"}
REGRESSION = {"mae": "lower_is_better", "rmse": "lower_is_better", "r2": "higher_is_better",
              "n_rows": "neutral"}


def _slices(n_slices: int) -> tuple[list[str], list[str]]:
    """``overall``, then one-column slices ``origin=...``, then crosses, ``n_slices`` in all."""
    names, cols = ["overall"], [""]
    n_one = max((n_slices - 1) // 3, 1)
    for i in range(n_slices - 1):
        if i < n_one:
            names.append(f"origin=A{i:03d}" if i else f"origin={EVIL}")
            cols.append("origin")
        else:
            names.append(f"origin=A{i % n_one:03d},hour_band={'night' if i % 2 else 'day'}{i}")
            cols.append("origin,hour_band")
    return names, cols


def _windows(n_windows: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n_windows, freq="D", tz="UTC")


def make_metrics(n_slices=20, n_windows=5, tasks=(("delay", "champion", BINARY),
                                                  ("delay", "challenger", BINARY),
                                                  ("minutes", "champion", REGRESSION)),
                 seed=0) -> pd.DataFrame:
    """A metrics table with every (task, model, window, slice, metric), plus per-class f1 rows
    and a macro f1; some values undefined."""
    rng = np.random.default_rng(seed)
    names, cols = _slices(n_slices)
    wins = _windows(n_windows)
    frames = []
    for task, model, spec in tasks:
        mets = list(spec) + (["f1", "f1"] if "f1" in spec else [])
        avg = [("binary" if m == "f1" else None) for m in spec] + \
            (["macro", None] if "f1" in spec else [])
        cls = [None] * len(spec) + ([None, "1"] if "f1" in spec else [])
        k, s, w = len(mets), len(names), len(wins)
        n = k * s * w
        value = rng.uniform(0.5, 0.95, n)
        value[rng.random(n) < 0.02] = np.nan
        n_lab = rng.integers(50, 5000, n).astype(float)
        frames.append(pd.DataFrame({
            "run_id": RUN, "task": task, "model": model,
            "window_start": np.repeat(wins, s * k),
            "window_end": np.repeat(wins + pd.Timedelta(days=1), s * k),
            "slice": np.tile(np.repeat(names, k), w), "slice_columns": np.tile(np.repeat(cols, k), w),
            "metric": np.tile(mets, s * w), "class_label": np.tile(np.array(cls, dtype=object), s * w),
            "average": np.tile(np.array(avg, dtype=object), s * w), "value": value,
            "direction": np.tile([spec[m] for m in mets], s * w),
            "ci_lower": value - 0.03, "ci_upper": value + 0.03, "n_rows": np.round(n_lab * 1.2),
            "n_labeled": n_lab, "undefined_reason": np.where(np.isnan(value), "single_class", ""),
            "error_bound": np.full(n, 0.002), "ci_method": "bootstrap",
            "ci_flag": np.where(n_lab < 100, "few_rows", None)}))
    return pd.concat(frames, ignore_index=True)


def make_coverage(n_slices=20, n_windows=5, models=("champion", "challenger")) -> pd.DataFrame:
    names, cols = _slices(n_slices)
    wins = _windows(n_windows)
    s, w = len(names), len(wins)
    frames = []
    for model in models:
        rows = np.linspace(1000, 5000, s * w)
        frames.append(pd.DataFrame({
            "run_id": RUN, "model": model, "window_start": np.repeat(wins, s),
            "window_end": np.repeat(wins + pd.Timedelta(days=1), s), "slice": np.tile(names, w),
            "slice_columns": np.tile(cols, w), "n_rows": rows, "n_labeled": rows * 0.8,
            "label_coverage": np.full(s * w, 0.8) - np.linspace(0, 0.3, s * w)}))
    return pd.concat(frames, ignore_index=True)


def make_drift(n_slices=20, n_features=4, n_windows=5, models=("champion",),
               seed=0) -> pd.DataFrame:
    """A psi row per (model, window, slice, feature) plus a ks row for feature 0."""
    rng = np.random.default_rng(seed)
    names, cols = _slices(n_slices)
    wins = _windows(n_windows)
    feats = [f"f{i:02d}" for i in range(n_features)]
    feats[min(1, n_features - 1)] = EVIL
    s, w, f = len(names), len(wins), len(feats)
    frames = []
    for model in models:
        n = w * s * f
        stat = rng.gamma(1.0, 0.05, n)
        frames.append(pd.DataFrame({
            "run_id": RUN, "model": model, "window_start": np.repeat(wins, s * f),
            "window_end": np.repeat(wins + pd.Timedelta(days=1), s * f),
            "slice": np.tile(np.repeat(names, f), w), "slice_columns": np.tile(np.repeat(cols, f), w),
            "feature": np.tile(feats, s * w), "kind": "feature", "method": "psi",
            "statistic": stat, "p_value": np.nan, "threshold": 0.1, "drifted": stat >= 0.1,
            "reference_window": "2023-12", "error_bound": 0.0, "undefined_reason": "",
            "n_reference": 10000.0, "n_current": 2000.0}))
        ov = frames[-1][(frames[-1]["slice"] == "overall") & (frames[-1]["feature"] == feats[0])]
        p = rng.uniform(0, 0.2, len(ov))
        frames.append(ov.assign(method="ks", statistic=p * 0.5, p_value=p, threshold=0.05,
                                drifted=p < 0.05))
    return pd.concat(frames, ignore_index=True)


def make_histograms(n_features=4, n_windows=5, n_bins=12, models=("champion",)) -> pd.DataFrame:
    feats = [f"f{i:02d}" for i in range(n_features)]
    feats[min(1, n_features - 1)] = EVIL
    rows = []
    for model in models:
        for fi, feat in enumerate(feats):
            kind_cat = fi % 3 == 2
            nb = n_bins * 6 if fi in (0, 2) else n_bins  # many bins: one numeric, one categorical
            ref = np.ones(nb) / nb
            cur = np.linspace(0.5, 1.5, nb)
            cur /= cur.sum()
            labels = ([f"c{j}" for j in range(nb - 1)] + ["other"] if kind_cat else
                      [f"[{j:.4g}, {j + 1:.4g})" for j in range(nb)])
            for ws in _windows(n_windows):
                rows.append(pd.DataFrame({
                    "model": model, "feature": feat, "kind": "feature", "window_start": ws, "bin": np.arange(nb), "bin_label": labels,
                    "reference": ref, "current": cur}))
    return pd.concat(rows, ignore_index=True)


def make_gates(n_fail=1) -> pd.DataFrame:
    wins = _windows(3)
    return pd.DataFrame({
        "run_id": RUN, "rule": ["auc_floor"] * 3, "task": "delay", "model": "champion",
        "window_start": wins, "slice": "overall", "metric": "roc_auc", "value": [0.8, 0.7, 0.6],
        "baseline": np.nan, "threshold": ">= 0.65", "passed": [True] * (3 - n_fail) + [False] *
        n_fail, "detail": ""})


MANIFEST = {"run_id": RUN, "config_hash": "abc123", "row_counts": {"read": 123456, "invalid":
            {"missing_label": 12}}, "durations": {"scan": 12.5, "finalize": 0.7},
            "versions": {"rayeval": "0.1.0", "ray": "2.60.0"}}


def full_report(**kw) -> str:
    n_slices, n_windows, n_features = kw.get("n_slices", 20), kw.get("n_windows", 5), \
        kw.get("n_features", 4)
    return render_report(f"Flights {EVIL}", RUN, make_metrics(n_slices, n_windows),
                         make_coverage(n_slices, n_windows),
                         make_drift(n_slices, n_features, n_windows),
                         make_gates(), make_histograms(n_features, n_windows), MANIFEST)


class _Checker(HTMLParser):
    """Collects tags and checks that every opened element is closed (void elements aside)."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "line", "circle", "polyline",
            "polygon"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append((tag, self.stack[-3:]))
        else:
            self.stack.pop()


def _parse(html: str) -> _Checker:
    p = _Checker()
    p.feed(html)
    p.close()
    return p


def test_structure_and_content():
    html = full_report()
    p = _parse(html)
    assert not p.errors and not p.stack
    for text in ("FAIL", "1 of 3 gate checks failed", "Gates", "Performance: delay / champion",
                 "Performance: minutes / champion", "Worst slices by roc_auc",
                 "Worst slices by mae", "by origin,hour_band", "Drift", "Model champion",
                 "Label coverage", "Lowest coverage slices", "Most drifted slices", "abc123",
                 "scan 12.5s", "missing_label: 12"):
        assert text in html, text
    # headline metrics picked by what is present: classification vs regression
    perf = html.split("Performance: minutes / champion")[1].split("</section>")[0]
    assert ">mae <" in perf and ">rmse <" in perf and "roc_auc" not in perf
    assert p.tags.count("svg") >= 3 * 4 + 4 * 2
    assert "<script" not in html.replace("&lt;script", "")  # nothing executable, no JS needed
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched at view time


def test_escaping():
    html = full_report()
    assert EVIL not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in html
    assert "<title>Flights &lt;script&gt;" in html


def test_gate_verdict_pass_and_no_gates():
    html = render_report("t", RUN, make_metrics(5, 2), make_coverage(5, 2), None,
                         make_gates(n_fail=0), None, MANIFEST)
    assert "PASS" in html and "all 3 gate checks passed" in html
    html = render_report("t", RUN, make_metrics(5, 2), make_coverage(5, 2), None,
                         pd.DataFrame(), None, {})
    assert "NO GATES" in html and "No drift was computed" in html


@pytest.mark.parametrize("empty", [pd.DataFrame(), None])
def test_empty_inputs(empty):
    m = make_metrics(5, 2).iloc[:0]
    html = render_report("empty", RUN, m if empty is not None else pd.DataFrame(),
                         make_coverage(5, 2).iloc[:0], empty, pd.DataFrame(), empty, {})
    p = _parse(html)
    assert not p.errors and not p.stack
    assert "No metrics." in html and "No coverage table." in html


def test_no_windows_and_undefined_values():
    m = make_metrics(6, 1).assign(window_start=pd.NaT, window_end=pd.NaT)
    m.loc[m["metric"] == "roc_auc", ["value", "undefined_reason"]] = [np.nan, "single_class"]
    d = make_drift(6, 2, 1).assign(window_start=pd.NaT)
    h = make_histograms(2, 1).assign(window_start=pd.NaT)
    html = render_report("nowin", RUN, m, make_coverage(6, 1).assign(window_start=pd.NaT), d,
                         make_gates(), h, MANIFEST)
    assert "all data" in html and "single_class" in html
    assert not _parse(html).errors


def test_bins_are_bounded():
    html = full_report()
    numeric = html.split('<h4>f00 <small>')[1].split("</div>")[0]
    assert numeric.startswith("feature, numeric")
    assert numeric.count("<g><title>") == 36 and "[0, 1) … [1, 2)" in numeric
    categorical = html.split('<h4>f02 <small>')[1].split("</div>")[0]
    assert categorical.startswith("feature, categorical")
    assert categorical.count("<g><title>") == 40 and "(33 other bins)" in categorical


def test_size_bounded_on_large_run():
    """1,000 slices x 50 features x 20 windows: the page stays small (size is what we assert;
    the time is printed)."""
    m = make_metrics(1000, 20)
    cov = make_coverage(1000, 20)
    d = make_drift(1000, 50, 20)
    h = make_histograms(50, 20, n_bins=30)
    t0 = time.perf_counter()
    html = render_report("large", RUN, m, cov, d, make_gates(), h, MANIFEST)
    dt = time.perf_counter() - t0
    size = len(html.encode())
    print(f"\nreport: {len(m):,} metric rows, {len(d):,} drift rows -> "
          f"{size / 1e6:.2f} MB in {dt:.2f}s")
    assert size < 3e6
    assert html.count("<svg") <= 3 * 4 + 50 * 3 + 2 + 10
    assert not _parse(html).errors


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    return exe


@pytest.mark.chromium
def test_chromium_renders(tmp_path):
    exe = _chromium()
    page = tmp_path / "report.html"
    page.write_text(full_report(n_slices=40, n_windows=12, n_features=6), encoding="utf-8")
    shot = tmp_path / "shot.png"
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage"]
    url = page.as_uri()
    dom = subprocess.run(base + [f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = dom.stdout
    for text in ("Gates", "Performance: delay / champion", "Worst slices by roc_auc", "Drift",
                 "Label coverage", "FAIL"):
        assert text in out, text
    assert out.count("<svg") >= 10 and "<polyline" in out and "<rect" in out
    assert EVIL not in out
    r = subprocess.run(base + [f"--user-data-dir={tmp_path / 'p2'}", f"--screenshot={shot}",
                               "--window-size=1280,2000", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
