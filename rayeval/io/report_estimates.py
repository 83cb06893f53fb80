"""Report section: CBPE estimates vs measured values (the ``estimated`` table), bounded: per
task and model the overall slice over the latest 8 windows, then the 10 slice x window rows whose
measured accuracy misses its estimate the most (concept-shift flags first)."""

from __future__ import annotations

import pandas as pd

from rayeval.io._html import _e, _note, _table, _val

SHOWN = ("accuracy", "f1", "roc_auc")


def estimates_section(est: pd.DataFrame | None) -> str:
    """The ``<section id="estimates">`` HTML (empty string when there are no estimates)."""
    if est is None or est.empty:
        return ""
    out = ['<section id="estimates"><h2>Estimated vs measured (CBPE)</h2>',
           _note("Estimated from calibrated scores alone (CBPE); measured where labels exist. A "
                 "flagged row: measured accuracy misses its estimate by more than the tolerance "
                 "and 3 sampling errors (concept shift, or uncalibrated scores).")]
    for (task, model), g in est.groupby(["task", "model"], sort=True):
        out.append(f"<h3>{_e(task)} / {_e(model)}</h3>")
        ov = g[(g["slice"] == "overall") & g["metric"].isin(SHOWN)]
        wins = sorted(ov["window_start"].dropna().unique())[-8:]
        ov = ov[ov["window_start"].isin(wins) | ov["window_start"].isna()]
        rows = [[str(r.window_start)[:16], r.metric, "yes" if r.mature else "no",
                 _val(r.value, bound=r.error_bound), _val(r.measured), _val(r.gap),
                 "concept shift?" if r.concept_shift else ""]
                for r in ov.sort_values(["window_start", "metric"]).itertuples()]
        out.append(_table(["window", "metric", "mature", "estimated", "measured", "gap", ""],
                          rows))
        acc = g[(g["metric"] == "accuracy") & g["measured"].notna() & (g["slice"] != "overall")]
        if len(acc):
            acc = acc.assign(a=acc["gap"].abs()).sort_values(["concept_shift", "a"],
                                                             ascending=False).head(10)
            rows = [[str(r.window_start)[:16], r.slice, _val(r.value), _val(r.measured),
                     _val(r.gap), "concept shift?" if r.concept_shift else ""]
                    for r in acc.itertuples()]
            out.append("<h4>Largest accuracy gaps by slice</h4>")
            out.append(_table(["window", "slice", "estimated", "measured", "gap", ""], rows))
    out.append("</section>")
    return "".join(out)
