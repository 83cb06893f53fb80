"""Report section: per task and model, the headline metrics of the overall slice over windows,
the overall metrics of the latest windows, and the :data:`~rayeval.io.report.TOP_N` worst
slices per slicing (imported by :mod:`rayeval.io.report`)."""

from __future__ import annotations

import math

import pandas as pd

from rayeval.io._html import _Html, _e, _fmt, _note, _signed, _table, _val, _wlabel
from rayeval.io._report_data import (MAX_TABLE_METRICS, TOP_N, _headline_variant, _windows,
                                     _with_w, headline_order)
from rayeval.io._svg import line_chart
from rayeval.io.attention import rank_worst


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
