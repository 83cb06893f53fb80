"""The self-contained HTML report of one run (inline CSS and SVG; nothing is fetched at view time).

Sections: a header with the gate verdict, row counts and stage durations; the gates; per task and
model the headline metrics of the overall slice over windows, the overall metrics per window and
the worst slices; drift per feature (reference vs current histogram of the latest window, the
decision statistic over windows with its threshold); label coverage per window.

What is drawn is bounded so a run with thousands of slices and features stays a small file that
opens quickly: only the overall slice over time, the :data:`TOP_N` worst slices per slicing, one
histogram per feature (at most :data:`MAX_BINS` bars), at most :data:`MAX_WINDOWS` windows per
chart or table, :data:`MAX_FEATURES` feature cards and :data:`MAX_GATE_ROWS` gate rows per run.
Every string from the data (slice values, feature and model names, labels) is HTML-escaped.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rayeval.core import registry
from rayeval.drift.methods import METHODS
from rayeval.io._html import (_NAT, _e, _fmt, _Html, _isnan, _note, _Num,  # noqa: F401
                              _pct, _signed, _table, _val, _wlabel)
from rayeval.io._svg import CUR_COLOR, REF_COLOR, bar_chart, line_chart
from rayeval.io.attention import rank_worst

AVERAGE_ORDER = ("binary", "macro", "micro", "weighted")  # the headline variant, as in the gates
#: drift methods that are tests: drift when p_value < threshold (else statistic >= threshold)
TEST_METHODS = frozenset(n for n, m in METHODS.items() if m.test)
TOP_N = 10
MAX_WINDOWS = 100
MAX_FEATURES = 100
MAX_BINS = 40
MAX_GATE_ROWS = 200
MAX_TABLE_METRICS = 16
_METRIC_OPTIONAL = ("window_start", "class_label", "average", "direction", "ci_lower", "ci_upper",
                    "n_rows", "n_labeled", "undefined_reason", "error_bound", "slice")
_DRIFT_OPTIONAL = ("window_start", "slice", "slice_columns", "kind", "p_value", "threshold",
                   "drifted", "error_bound", "n_current", "model")


def _wkeys(s: pd.Series) -> np.ndarray:
    """Window starts as int64 ns keys (NaT, i.e. no windowing, sorts first)."""
    d = pd.to_datetime(s, utc=True).dt.tz_localize(None).dt.as_unit("ns")
    return d.to_numpy().view("i8")


def _with_w(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(wk=_wkeys(df["window_start"]))


def _windows(df: pd.DataFrame) -> list[int]:
    """The latest :data:`MAX_WINDOWS` window keys of ``df`` (with ``wk``), in time order."""
    return sorted(set(df["wk"].tolist()))[-MAX_WINDOWS:]


def _usable(df: pd.DataFrame | None, *cols: str) -> bool:
    return df is not None and not df.empty and all(c in df.columns for c in cols)


def _ensure(df: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    """``df`` with optional columns it lacks added as missing values."""
    missing = [c for c in cols if c not in df.columns]
    return df.assign(**{c: np.nan for c in missing}) if missing else df


def _header(title: str, run_id: str, gates: pd.DataFrame, manifest: dict) -> str:
    if _usable(gates, "passed"):
        n_fail = int((gates["passed"] != True).sum())  # noqa: E712 (NA counts as failed)
        verdict, cls = ("FAIL", "fail") if n_fail else ("PASS", "pass")
        detail = f"{n_fail} of {len(gates)} gate checks failed" if n_fail else \
            f"all {len(gates)} gate checks passed"
    else:
        verdict, cls, detail = "NO GATES", "none", "no gate configured"
    manifest = manifest or {}

    def kv(d: object) -> str:
        if not isinstance(d, dict) or not d:
            return "—"
        return ", ".join(f"{k}: {kv(v) if isinstance(v, dict) else _fmt(v)}" for k, v in d.items())

    dur = manifest.get("durations") or {}
    total = sum(v for v in dur.values() if isinstance(v, (int, float)))
    dur_s = ", ".join(f"{k} {v:.1f}s" for k, v in dur.items() if isinstance(v, (int, float)))
    rows = [("Run", run_id), ("Config hash", manifest.get("config_hash", "—")),
            ("Rows", kv(manifest.get("row_counts"))),
            ("Durations", f"{dur_s} (total {total:.1f}s)" if dur_s else "—"),
            ("Versions", kv(manifest.get("versions")))]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return (f'<header><div class="verdict {cls}">{verdict}<small>{_e(detail)}</small></div>'
            f"<h1>{_e(title)}</h1><dl>{dl}</dl></header>")


def _gates_section(gates: pd.DataFrame) -> str:
    """Failed gate checks in a table; the passed ones collapsed (one line per rule, the rows
    in a closed ``<details>``)."""
    out = ['<section id="gates"><h2>Gates</h2>']
    if not _usable(gates, "passed"):
        out.append(_note("No gate configured for this run."))
        return "".join(out) + "</section>"
    g = _ensure(gates, ("rule", "model", "window_start")).assign(
        ok_=gates["passed"] == True)  # noqa: E712
    g = g.sort_values(["rule", "model", "window_start"], kind="stable")
    cols = [c for c in ("rule", "task", "model", "window_start", "slice", "metric", "on",
                        "value", "baseline", "operator", "threshold", "passed", "reason",
                        "detail") if c in g.columns]

    def table(part: pd.DataFrame) -> str:
        rows = []
        for r in part.head(MAX_GATE_ROWS).itertuples(index=False):
            d = r._asdict()
            row = [d[c] for c in cols]
            if "passed" in cols:
                ok = d["ok_"]
                row[cols.index("passed")] = _Html(f'<span class="{"ok" if ok else "bad"}">'
                                                  f'{"pass" if ok else "FAIL"}</span>')
            rows.append(row)
        more = len(part) - MAX_GATE_ROWS
        return (_table([{"window_start": "window"}.get(c, c) for c in cols], rows, "gates")
                + (_note(f"{more} more rows are in the gates table.") if more > 0 else ""))

    failed, passed = g[~g["ok_"]], g[g["ok_"]]
    if len(failed):
        out.append(f"<h3>Failed ({len(failed)} of {len(g)} checks)</h3>" + table(failed))
    if len(passed):
        rules = passed.groupby("rule", sort=True).size()
        what = ", ".join(f"{r} ({n})" for r, n in rules.items())
        out.append(f"<details><summary>Passed: {len(passed)} of {len(g)} checks "
                   f"<small>{_e(what)}</small></summary>{table(passed)}</details>")
    return "".join(out) + "</section>"


def _attention_section(metrics: pd.DataFrame | None, drift: pd.DataFrame | None,
                       gates: pd.DataFrame | None) -> str:
    """The first screen: failed gates (per rule and model), columns whose verdict is drifted
    in the latest window (overall slice), and per task and model the slices whose credible
    bound of the headline metric is worse than the overall value in the latest window."""
    out = ['<section id="attention"><h2>Needs attention</h2>']
    items = 0
    if _usable(gates, "passed", "rule"):
        failed = _ensure(gates[gates["passed"] != True], ("model",))  # noqa: E712
        if len(failed):
            g = failed.assign(model=failed["model"].fillna("—")).groupby(
                ["rule", "model"], sort=True).size()
            out.append(f'<h3>Failed gates <small><a href="#gates">all gates</a></small></h3>'
                       + _table(["rule", "model", "failed checks"],
                                [[r, m, n] for (r, m), n in g.items()]))
            items += 1
    if _usable(drift, "drifted", "feature", "slice"):
        d = _with_w(_ensure(drift, ("kind", "model", "window_start")))
        ov = d[(d["slice"] == "overall") & (d["kind"] != "dataset")]
        if len(ov):
            latest = ov["wk"].max()
            n_win = ov["wk"].nunique()
            per = ov.groupby(["model", "kind", "feature"], dropna=False)["drifted"].agg(
                lambda s: int((s == True).sum()))  # noqa: E712
            now = ov[(ov["wk"] == latest) & (ov["drifted"] == True)]  # noqa: E712
            if len(now):
                rows = [[str(r.model), r.kind, str(r.feature), r.method, r.statistic,
                         r.p_value, r.threshold,
                         f"{per.get((r.model, r.kind, r.feature), 0)} / {n_win}"]
                        for r in now.itertuples(index=False)]
                out.append(f'<h3>Drifted in the latest window ({_e(_wlabel(latest))}) '
                           f'<small><a href="#drift">drift</a></small></h3>' + _table(
                               ["model", "kind", "column", "deciding method", "statistic",
                                "p-value", "threshold", "windows drifted"], rows))
                items += 1
    if _usable(metrics, "task", "model", "metric", "slice_columns", "value", "direction"):
        rows = []
        m = _ensure(metrics, _METRIC_OPTIONAL)
        for (task, model), g in m.groupby(["task", "model"], sort=True):
            hv = _with_w(_headline_variant(g))
            present = set(hv["metric"])
            metric = next((x for x in headline_order() if x in present), None)
            if metric is None:
                continue
            sel = hv[(hv["metric"] == metric) & hv["value"].notna()]
            if sel.empty:
                continue
            latest = sel["wk"].max()
            sel = sel[sel["wk"] == latest]
            overall = sel[sel["slice_columns"].fillna("") == ""]["value"]
            if overall.empty:
                continue
            base = float(overall.iloc[0])
            ranked = rank_worst(sel[sel["slice_columns"].fillna("") != ""], hv)
            higher = (ranked["direction"] == "higher_is_better").any()
            worse = ranked[ranked["bound"] < base] if higher else ranked[ranked["bound"] > base]
            for r in worse.head(3).itertuples(index=False):
                rows.append([task, model, metric, _Html(f'<span class="slice">{_e(r.slice)}'
                                                        '</span>'), r.value, base, r.bound,
                             r.n_labeled])
        if rows:
            out.append("<h3>Slices credibly worse than overall (latest window)</h3>" + _table(
                ["task", "model", "metric", "slice", "value", "overall", "credible bound",
                 "labeled"], rows))
            items += 1
    if not items:
        out.append(_note("Nothing needs attention: every gate passed, no column drifted in "
                         "the latest window, no slice is credibly worse than overall."))
    return "".join(out) + "</section>"


def headline_order() -> list[str]:
    """Headline metric names, first-ranked first, as the registered specs of a binary, a
    multiclass and a regression task declare them (:func:`rayeval.core.registry.headline_metrics`;
    the report is drawn from the tables alone, without the task configs)."""
    from rayeval.config import TaskConfig

    tasks = [TaskConfig(name="binary", type="binary", label="y", prediction="p", score="s",
                        positive_class=1),
             TaskConfig(name="multiclass", type="multiclass", label="y", prediction="p",
                        scores=["a", "b"], classes=[0, 1]),
             TaskConfig(name="regression", type="regression", label="y", prediction="p")]
    return list(dict.fromkeys(m for t in tasks for m in registry.headline_metrics(t)))


def _headline_variant(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without a class label, one averaging per metric (binary, macro, micro, weighted)."""
    df = df[df["class_label"].isna()]
    if df.empty:
        return df
    choice = {}
    for metric, avg in df.groupby("metric", sort=False)["average"]:
        present = set(avg.dropna())
        choice[metric] = next((a for a in AVERAGE_ORDER if a in present), None)
    want = df["metric"].map(choice)
    return df[(df["average"] == want) | (df["average"].isna() & want.isna())]


def _performance_section(idx: int, task: str, model: str, g: pd.DataFrame) -> str:
    hv = _with_w(_headline_variant(g))
    ov = hv[hv["slice_columns"].fillna("") == ""]
    name = f"{task} / {model}"
    out = [f'<section id="perf-{idx}"><h2>Performance: {_e(name)}</h2>']
    if ov.empty:
        out.append(_note("No overall-slice metrics for this task and model."))
        return "".join(out) + "</section>"
    present = list(dict.fromkeys(ov["metric"]))
    direction = ov.drop_duplicates("metric").set_index("metric")["direction"].to_dict()
    heads = [m for m in headline_order() if m in present] or \
        [m for m in present if direction.get(m) != "neutral"][:4]
    wins = _windows(ov)
    labels = [_wlabel(w) for w in wins]
    ov = ov[ov["wk"].isin(wins)].drop_duplicates(["wk", "metric"])
    by = {m: d.set_index("wk").reindex(wins) for m, d in ov.groupby("metric", sort=False)}
    cards = []
    for m in heads:
        d = by[m]
        ys = d["value"].astype(float).tolist()
        last = next((v for v in reversed(ys) if not math.isnan(v)), math.nan)
        arrow = {"higher_is_better": "↑ better", "lower_is_better": "↓ better"}.get(
            direction.get(m), "")
        chart = line_chart(ys, labels, lo=d["ci_lower"].astype(float).tolist(),
                           hi=d["ci_upper"].astype(float).tolist(), label=f"{m} over windows")
        cards.append(f'<div class="card"><h4>{_e(m)} <small>{arrow}</small></h4>'
                     f'<div class="big">{_e(_fmt(last))}</div>{chart}</div>')
    out.append('<h3>Headline metrics (overall)</h3><div class="grid">' + "".join(cards) + "</div>")
    tab_metrics = (heads + sorted(m for m in present if m not in heads
                                  and direction.get(m) != "neutral"))[:MAX_TABLE_METRICS]
    counts = ov.groupby("wk")[["n_rows", "n_labeled"]].max().reindex(wins)
    rows = []
    for i, w in enumerate(wins):
        row = [labels[i], counts["n_rows"].iloc[i], counts["n_labeled"].iloc[i]]
        for m in tab_metrics:
            r = by[m].iloc[i]
            row.append(_val(r["value"], r["ci_lower"], r["ci_upper"], r["error_bound"],
                            r["undefined_reason"]))
        rows.append(row)
    out.append("<h3>Overall per window</h3>" +
               _table(["window", "rows", "labeled"] + tab_metrics, rows[::-1], "wide"))
    out.append(_worst_slices(hv, heads[0], direction.get(heads[0]), by[heads[0]], wins))
    return "".join(out) + "</section>"


def _worst_slices(hv: pd.DataFrame, metric: str, direction: str | None,
                  overall: pd.DataFrame, wins: list[int]) -> str:
    """Per slicing, the :data:`TOP_N` worst credible slices by ``metric`` in the latest window
    and over all windows (each slice at its worst window), with the gap to the overall value:
    ranked by the good-side bound of the value (:mod:`rayeval.io.attention`), so a slice leads
    only when even its best plausible value is bad."""
    sl = hv[(hv["metric"] == metric) & (hv["slice_columns"].fillna("") != "")
            & hv["value"].notna()]
    out = [f"<h3>Worst slices by {_e(metric)}</h3>", _note(
        "Ranked by the credible bound: the best value the data still allows (the interval "
        "bound when intervals are on, else a Wilson bound on the labelled rows, for an AUC "
        "on its smaller class), so small slices lead only when even that is bad.")]
    if sl.empty or direction not in ("higher_is_better", "lower_is_better"):
        return "".join(out) + _note("No slice has a defined value for this metric.")
    ref = overall["value"].astype(float).to_dict()
    latest = max(sl["wk"])
    for cols, d in sl.groupby("slice_columns", sort=True):
        d = rank_worst(d, hv)
        now = d[d["wk"] == latest].head(TOP_N)
        ever = d.drop_duplicates("slice").head(TOP_N)
        blocks = []
        for caption, t, win in ((f"latest window ({_wlabel(latest)})", now, False),
                                ("all windows (each slice at its worst)", ever, True)):
            rows = [[_Html(f'<span class="slice">{_e(r.slice)}</span>')] +
                    ([_wlabel(r.wk)] if win else []) +
                    [_val(r.value, r.ci_lower, r.ci_upper, r.error_bound),
                     _signed(r.value - ref.get(r.wk, math.nan)), r.bound, r.n_labeled]
                    for r in t.itertuples(index=False)]
            blocks.append(f'<div><h4>{_e(caption)}</h4>' + _table(
                ["slice"] + (["window"] if win else []) +
                [metric, "Δ vs overall", "credible bound", "labeled"], rows) + "</div>")
        n = d["slice"].nunique()
        out.append(f'<details open><summary>by {_e(cols)} <small>({n} slices)</small></summary>'
                   f'<div class="pair">{"".join(blocks)}</div></details>')
    return "".join(out)


def _numeric_bins(labels: list[str]) -> bool:
    """Numeric binnings label bins ``[lo, hi)`` or by their point value; categorical ones by
    category, with a last ``other`` bin."""
    def num(s: str) -> bool:
        try:
            float(s)
        except ValueError:
            return s.startswith("[")
        return True
    return all(num(s) for s in labels)


def _bounded_bins(h: pd.DataFrame) -> tuple[list[str], list[float], list[float]]:
    """At most :data:`MAX_BINS` bars: numeric bins merged in consecutive groups of equal width,
    categorical bins beyond the largest ones summed into one bar."""
    h = h.sort_values("bin")
    lab, ref = h["bin_label"].astype(str).tolist(), h["reference"].astype(float).to_numpy()
    cur = h["current"].astype(float).to_numpy()
    if len(lab) <= MAX_BINS:
        return lab, ref.tolist(), cur.tolist()
    if not _numeric_bins(lab):
        top = np.argsort(-np.maximum(ref, cur), kind="stable")[: MAX_BINS - 1]
        top.sort()
        rest = np.setdiff1d(np.arange(len(lab)), top)
        return ([lab[i] for i in top] + [f"({len(rest)} other bins)"],
                ref[top].tolist() + [float(ref[rest].sum())],
                cur[top].tolist() + [float(cur[rest].sum())])
    k = -(-len(lab) // MAX_BINS)  # equal-width groups keep the bar heights comparable
    groups = [np.arange(i, min(i + k, len(lab))) for i in range(0, len(lab), k)]
    return ([f"{lab[g[0]]} … {lab[g[-1]]}" if len(g) > 1 else lab[g[0]] for g in groups],
            [float(ref[g].sum()) for g in groups], [float(cur[g].sum()) for g in groups])


def _drift_section(drift: pd.DataFrame | None, hist: pd.DataFrame | None) -> str:
    out = ['<section id="drift"><h2>Drift</h2>']
    if not _usable(drift, "feature", "method", "statistic"):
        out.append(_note("No drift was computed for this run."))
        return "".join(out) + "</section>"
    d = _with_w(_ensure(drift, _DRIFT_OPTIONAL))
    d = d.assign(model=d["model"].fillna(""))
    is_test = d["method"].isin(TEST_METHODS) | (d["p_value"].notna() if "p_value" in d else False)
    thr = d["threshold"].astype(float)
    decision = np.where(is_test, d["p_value"].astype(float), d["statistic"].astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        sev = np.where(is_test, np.log10(np.maximum(decision, 1e-300)) / np.log10(thr),
                       decision / thr)
    d = d.assign(is_test=is_test, dec=decision, sev=sev,
                 is_overall=d["slice_columns"].fillna("") == "", flag=d["drifted"] == True)  # noqa: E712
    hist_by = {}
    if _usable(hist, "model", "feature", "bin", "window_start"):
        h = _with_w(hist)
        last = h.groupby(["model", "feature"])["wk"].transform("max")
        hist_by = {k: v for k, v in h[h["wk"] == last].groupby(["model", "feature"], sort=False)}
    for mi, (model, dm) in enumerate(d.groupby("model", sort=True)):
        out.append(f'<h3 id="drift-{mi}">Model {_e(model)}</h3>')
        ov = dm[dm["is_overall"]]
        sl = dm[~dm["is_overall"]]
        wins = _windows(ov) if not ov.empty else []
        labels = [_wlabel(w) for w in wins]
        latest = wins[-1] if wins else None
        rows, cards = [], []
        # one verdict row per column, window and slice (its deciding method)
        keys = ov.groupby(["feature", "kind"], sort=True, dropna=False)
        sl_latest = sl[sl["wk"] == max(sl["wk"])] if not sl.empty else sl
        sl_count = sl_latest.groupby(["feature", "kind"])["flag"].agg(["sum", "size"])
        summary = []
        for (feat, kind), f in keys:
            f = f.drop_duplicates("wk").set_index("wk").reindex(wins)
            last = f.iloc[-1]
            method = last["method"] if isinstance(last["method"], str) else \
                f["method"].dropna().iloc[-1]
            sc = sl_count.loc[(feat, kind)] if (feat, kind) in sl_count.index else None
            summary.append((not bool(last["flag"] == True), -int(f["flag"].eq(True).sum()),  # noqa: E712
                            str(feat), str(method), feat, kind, f, sc))
        summary.sort(key=lambda t: t[:4])
        for _, _, _, _, feat, kind, f, sc in summary:
            last = f.iloc[-1]
            flag = _Html('<span class="bad">drifted</span>' if last["flag"] == True  # noqa: E712
                         else '<span class="ok">no</span>')
            rows.append([str(feat), kind, last["method"], last["statistic"], last["p_value"],
                         last["threshold"], flag, f"{int(f['flag'].eq(True).sum())} / "
                         f"{int(f['dec'].notna().sum())}",
                         "—" if sc is None else f"{int(sc['sum'])} / {int(sc['size'])}"])
        if rows:
            out.append(f"<h4>Features (overall slice, latest window {_e(_wlabel(latest))})</h4>")
            out.append(_table(["feature", "kind", "method", "statistic", "p-value", "threshold",
                               "drifted", "windows drifted", "slices drifted (latest)"], rows))
        shown = list(dict.fromkeys(t[4] for t in summary))[:MAX_FEATURES]
        for feat in shown:
            cards.append(_feature_card(feat, [t for t in summary if t[4] == feat],
                                       hist_by.get((model, feat)), labels))
        if cards:
            out.append(f'<p class="legend"><i style="background:{REF_COLOR}"></i>reference '
                       f'<i style="background:{CUR_COLOR}"></i>current (latest window); '
                       'statistic over windows, dashed line = threshold, red dots = drifted '
                       '(tests plot the p-value)</p><div class="grid">' + "".join(cards) + "</div>")
        if len(summary) and len(set(t[4] for t in summary)) > MAX_FEATURES:
            out.append(_note(f"Charts for the first {MAX_FEATURES} features (drifted first)."))
        top = sl_latest[sl_latest["flag"]].sort_values("sev", ascending=False).head(
            2 * TOP_N)
        if not top.empty:
            out.append(f"<h4>Most drifted slices (latest window)</h4>" + _table(
                ["slice", "feature", "method", "statistic", "p-value", "threshold",
                 "error bound", "current rows"],
                [[_Html(f'<span class="slice">{_e(r.slice)}</span>'), str(r.feature), r.method,
                  r.statistic, r.p_value, r.threshold, r.error_bound, r.n_current]
                 for r in top.itertuples(index=False)]))
    return "".join(out) + "</section>"


def _feature_card(feat, entries, hist: pd.DataFrame | None, labels: list[str]) -> str:
    """One feature: histogram of its latest window, then up to 3 methods over windows."""
    kind = entries[0][5]
    if hist is not None and not hist.empty:
        numeric = _numeric_bins(hist["bin_label"].astype(str).tolist())
        kind = f"{kind}, {'numeric' if numeric else 'categorical'}"
    parts = [f'<div class="card"><h4>{_e(feat)} <small>{_e(kind)}</small></h4>']
    if hist is not None and not hist.empty:
        lab, ref, cur = _bounded_bins(hist)
        parts.append(bar_chart(lab, ref, cur, label=f"{feat} reference vs current"))
    for t in entries[:3]:
        f = t[6]
        method = t[3]
        thr = f["threshold"].dropna()
        parts.append(f'<div class="sub">{_e(method)}{" p-value" if f["is_test"].any() else ""}'
                     "</div>" + line_chart(
                         f["dec"].astype(float).tolist(), labels,
                         threshold=float(thr.iloc[-1]) if len(thr) else None,
                         flags=f["flag"].eq(True).tolist(), label=f"{feat} {method}",
                         height=90))
    return "".join(parts) + "</div>"


def _coverage_bar(v: float) -> _Html:
    width = 0.0 if _isnan(v) else min(max(float(v), 0.0), 1.0) * 100
    return _Html(f'<span class="bar"><i style="width:{width:.0f}%"></i></span> {_pct(v)}')


def _coverage_section(cov: pd.DataFrame) -> str:
    out = ['<section id="coverage"><h2>Label coverage</h2>']
    if not _usable(cov, "label_coverage", "model"):
        out.append(_note("No coverage table."))
        return "".join(out) + "</section>"
    c = _with_w(_ensure(cov, ("window_start", "slice", "slice_columns", "n_rows", "n_labeled")))
    for model, cm in c.groupby("model", sort=True):
        ov = cm[cm["slice_columns"].fillna("") == ""].drop_duplicates("wk")
        wins = _windows(ov) if not ov.empty else []
        ov = ov.set_index("wk").reindex(wins)
        out.append(f"<h3>Model {_e(model)}</h3>")
        if wins:
            ys = ov["label_coverage"].astype(float).tolist()
            chart = line_chart(ys, [_wlabel(w) for w in wins], label="label coverage",
                               fmt=lambda v: f"{v:.0%}", width=420)
            rows = [[_wlabel(w), r["n_rows"], r["n_labeled"], _coverage_bar(r["label_coverage"])]
                    for w, r in ov.iloc[::-1].iterrows()]
            out.append(f'<div class="pair"><div>{chart}</div><div>' +
                       _table(["window", "rows", "labeled", "coverage"], rows) + "</div></div>")
        sl = cm[cm["slice_columns"].fillna("") != ""]
        if not sl.empty:
            low = sl[sl["wk"] == sl["wk"].max()].sort_values("label_coverage").head(TOP_N)
            out.append("<h4>Lowest coverage slices (latest window)</h4>" + _table(
                ["slice", "rows", "labeled", "coverage"],
                [[_Html(f'<span class="slice">{_e(r.slice)}</span>'), r.n_rows, r.n_labeled,
                  _pct(r.label_coverage)] for r in low.itertuples(index=False)]))
    return "".join(out) + "</section>"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1a202c;background:#f7fafc}
main{max-width:1240px;margin:0 auto;padding:16px 24px}
header{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:16px 20px;display:flex;flex-wrap:wrap;gap:8px 24px;align-items:flex-start}
header h1{margin:0;font-size:22px;flex:1 1 400px;word-break:break-word}header dl{order:2;flex-basis:100%;display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dt{color:#718096}dd{margin:0;word-break:break-word}
.verdict{font-size:28px;font-weight:700;padding:8px 18px;border-radius:8px;color:#fff;order:1}
.verdict small{display:block;font-size:12px;font-weight:400}
.verdict.pass{background:#2f855a}.verdict.fail{background:#c53030}.verdict.none{background:#718096}
nav{margin:12px 0;font-size:13px}nav a{margin-right:12px;color:#2b6cb0}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:8px 20px 16px;margin:16px 0}
h2{font-size:19px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}h3{font-size:16px;margin:18px 0 8px}
h4{font-size:14px;margin:6px 0}h4 small,summary small{color:#718096;font-weight:400}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0 8px}
th,td{padding:3px 8px;border-bottom:1px solid #edf2f7;text-align:left;white-space:nowrap}
th{background:#f7fafc;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.wide{display:block;overflow-x:auto;max-height:480px}
td:last-child{white-space:normal}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(272px,1fr));gap:10px}
.card{border:1px solid #e2e8f0;border-radius:6px;padding:6px 8px}.big{font-size:22px;font-weight:600}
.pair{display:flex;flex-wrap:wrap;gap:8px 28px}.sub{font-size:11px;color:#4a5568}
.slice{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.ok{color:#2f855a}.bad{color:#c53030;font-weight:600}.na{color:#a0aec0}.note,.legend{color:#4a5568;font-size:12.5px}
.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 8px}
.bar{display:inline-block;width:80px;height:8px;background:#edf2f7;vertical-align:middle}.bar i{display:block;height:8px;background:#2b6cb0}
summary{cursor:pointer;font-weight:600;margin:6px 0}
svg.chart{display:block}.plot{fill:#fafcff;stroke:#e2e8f0}.ax{font-size:10px;fill:#718096}
.line{fill:none;stroke:#2b6cb0;stroke-width:1.6}.pt{fill:#2b6cb0}.bad{fill:#c53030}
.band{fill:#2b6cb0;fill-opacity:.15}.thr{stroke:#c53030;stroke-dasharray:4 3}
"""


def render_report(title: str, run_id: str, metrics: pd.DataFrame, coverage: pd.DataFrame,
                  drift: pd.DataFrame | None, gates: pd.DataFrame,
                  histograms: pd.DataFrame | None, manifest: dict,
                  estimated: pd.DataFrame | None = None,
                  comparisons: pd.DataFrame | None = None, blessing: dict | None = None) -> str:
    """Render one run as a self-contained HTML page (inline CSS and SVG, no scripts, no network).

    Args:
        title: page title (escaped).
        run_id: the run id shown in the header.
        metrics, coverage, drift, gates: the run's output tables (schemas in DESIGN.md section 5
            and ``rayeval.engine.results`` / ``gates``); ``drift`` may be ``None``; any may be
            empty.
        histograms: overall-slice reference vs current bin shares (``model, feature, kind,
            window_start, bin, bin_label, reference, current``) or ``None``.
        manifest: the run manifest (``config_hash``, ``row_counts``, ``durations``,
            ``versions`` are shown when present).
        estimated: the CBPE ``estimated`` table (estimates vs measured), or ``None``.
        comparisons, blessing: the comparisons table and the blessing record, when the run
            has them (section ``Champion vs challenger``).

    Returns:
        The HTML document as a string. Its size is bounded by the number of tasks, models,
        slicings, features and windows shown (see the module docstring), not by the number of
        slices or rows.
    """
    from rayeval.io.report_compare import comparisons_section

    body = [_header(title, run_id, gates, manifest), _attention_section(metrics, drift, gates),
            _gates_section(gates)]
    nav = ['<a href="#attention">Needs attention</a>', '<a href="#gates">Gates</a>']
    if blessing or (comparisons is not None and not comparisons.empty):
        body.append(comparisons_section(comparisons, blessing, (_e, _fmt, _note, _table)))
        nav.append('<a href="#comparisons">Champion vs challenger</a>')
    if _usable(metrics, "task", "model", "metric", "slice_columns", "value"):
        m = _ensure(metrics, _METRIC_OPTIONAL)
        m = m.assign(task=m["task"].fillna(""), model=m["model"].fillna(""))
        for i, ((task, model), g) in enumerate(m.groupby(["task", "model"], sort=True)):
            body.append(_performance_section(i, task, model, g))
            nav.append(f'<a href="#perf-{i}">{_e(task)} / {_e(model)}</a>')
    else:
        body.append('<section id="perf"><h2>Performance</h2>' + _note("No metrics.") +
                    "</section>")
    body += [_drift_section(drift, histograms), _coverage_section(coverage)]
    nav += ['<a href="#drift">Drift</a>', '<a href="#coverage">Label coverage</a>']
    if estimated is not None and len(estimated):
        from rayeval.io.report_estimates import estimates_section

        body.append(estimates_section(estimated))
        nav.append('<a href="#estimates">Estimated vs measured</a>')
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
            f"{body[0]}<nav>{''.join(nav)}</nav>{''.join(body[1:])}"
            f'<footer class="note">rayeval report · run {_e(run_id)}</footer>'
            "</main></body></html>")
