"""Report sections of the statistics: champion vs challenger comparisons and the blessing
(imported by :mod:`rayeval.io.report`; HTML only, escaped, no scripts)."""

from __future__ import annotations

import pandas as pd

#: comparison rows shown per (pair, task) in the overall slice, plus the top slices per metric
MAX_SLICE_ROWS = 10


def comparisons_section(comparisons: pd.DataFrame | None, blessing: dict | None,
                        html) -> str:
    """The ``Comparisons`` section: per pair and task, the overall difference of each metric
    per window with its paired interval and p-values, then the slices whose difference is
    significant after Benjamini-Hochberg; and the blessing verdict with its worst failing
    checks. ``html``: the report's ``(escape, format, note, table)`` helpers."""
    _e, _fmt, _note, _table = html

    out = ['<section id="comparisons"><h2>Champion vs challenger</h2>']
    if blessing:
        out.append(f"<p>Blessing: <b>{_e(blessing.get('status'))}</b> "
                   f"({_e(blessing.get('n_failed', 0))} of {_e(blessing.get('n_checks', 0))} "
                   "checks failed)</p>")
        for rule in blessing.get("failing_rules", []):
            rows = [[w.get("model"), (w.get("window_start") or "")[:10], w.get("slice"),
                     w.get("on"), _fmt(w.get("value")), w.get("operator"),
                     _fmt(w.get("threshold")), w.get("reason")] for w in rule["worst"]]
            out.append(f"<h3>failing rule {_e(rule['rule'])} ({_e(rule['n_failed'])} checks; "
                       "worst first)</h3>")
            out.append(_table(["model", "window", "slice", "on", "value", "op", "threshold",
                               "reason"], rows, "gates"))
    if comparisons is None or comparisons.empty:
        out.append(_note("No comparison configured for this run."))
        return "".join(out) + "</section>"
    c = comparisons
    for (task, base, cand), part in c.groupby(["task", "baseline", "candidate"], sort=True):
        out.append(f"<h3>{_e(task)}: {_e(cand)} − {_e(base)}</h3>")
        ov = part[part["slice"] == "overall"].sort_values(["metric", "window_start"])
        rows = [[r.metric, str(r.window_start)[:10], _fmt(r.baseline_value),
                 _fmt(r.candidate_value),
                 f"{_fmt(r.difference)} [{_fmt(r.ci_lower)}, {_fmt(r.ci_upper)}]",
                 _fmt(r.p_value), _fmt(r.p_adjusted), r.test, r.n_paired, r.n_unpaired]
                for r in ov.itertuples(index=False)]
        out.append(_table(["metric", "window", "baseline", "candidate", "difference [95%]",
                           "p", "p (BH)", "test", "paired", "unpaired"], rows, "cmp"))
        sig = part[(part["slice"] != "overall") & part["significant"]]
        counts = part[part["slice"] != "overall"].groupby("metric").agg(
            slices=("slice", "size"), significant=("significant", "sum"))
        if len(counts):
            out.append(_table(["metric", "slice x window cells", "significant (BH)"],
                              [[m, int(r.slices), int(r.significant)]
                               for m, r in counts.iterrows()], "cmp"))
        if len(sig):
            top = sig.assign(a=sig["difference"].abs()).sort_values("a", ascending=False)
            rows = [[r.metric, str(r.window_start)[:10], r.slice, _fmt(r.difference),
                     f"[{_fmt(r.ci_lower)}, {_fmt(r.ci_upper)}]", _fmt(r.p_adjusted)]
                    for r in top.head(MAX_SLICE_ROWS).itertuples(index=False)]
            out.append(_table(["metric", "window", "slice", "difference", "interval",
                               "p (BH)"], rows, "cmp"))
    return "".join(out) + "</section>"
