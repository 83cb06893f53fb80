"""The self-contained HTML report of one run (inline CSS and SVG; nothing is fetched at view time).

Sections: a header with the gate verdict, row counts and stage durations; the gates; per task and
model the headline metrics of the overall slice over windows, the overall metrics per window and
the worst slices; drift per feature (reference vs current histogram of the latest window, the
decision statistic over windows with its threshold); label coverage per window.
This module lays out the page (header, verdict sections, coverage, CSS); the performance
and drift sections are in :mod:`rayeval.io.report_performance` and :mod:`rayeval.io.report_drift`,
what they share in :mod:`rayeval.io._report_data`.

What is drawn is bounded so a run with thousands of slices and features stays a small file that
opens quickly: only the overall slice over time, the :data:`TOP_N` worst slices per slicing, one
histogram per feature (at most :data:`MAX_BINS` bars), at most :data:`MAX_WINDOWS` windows per
chart or table, :data:`MAX_FEATURES` feature cards and :data:`MAX_GATE_ROWS` gate rows per run.
Every string from the data (slice values, feature and model names, labels) is HTML-escaped.
"""

from __future__ import annotations

import pandas as pd

from rayeval.io._html import (_NAT, _e, _fmt, _Html, _isnan, _note, _Num,  # noqa: F401
                              _pct, _signed, _table, _val, _wlabel)
# the bounds of what is drawn, re-exported from here as before
from rayeval.io._report_data import (AVERAGE_ORDER, MAX_BINS, MAX_FEATURES,  # noqa: F401
                                     MAX_GATE_ROWS, MAX_TABLE_METRICS, MAX_WINDOWS, TOP_N,
                                     _METRIC_OPTIONAL, _ensure, _headline_variant, _usable,
                                     _windows, _with_w, headline_order)
from rayeval.io._svg import line_chart
from rayeval.io.attention import rank_worst
from rayeval.io.report_drift import TEST_METHODS, _drift_section  # noqa: F401
from rayeval.io.report_performance import _performance_section


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
