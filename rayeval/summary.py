"""Console summary of a finished run (rich tables): overall per window and model, worst slices,
drifted features, gate verdicts, and where the outputs are."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rayeval.config import JobConfig
from rayeval.core import registry
from rayeval.core.contract import LOWER
from rayeval.io.attention import rank_worst



def headline(metrics: pd.DataFrame, task) -> pd.DataFrame:
    """Rows of the task's headline metrics (declared by its specs, see
    :func:`rayeval.core.registry.headline_metrics`): binary / macro averages or un-averaged
    values."""
    m = metrics[metrics["metric"].isin(registry.headline_metrics(task))
                & metrics["class_label"].isna()]
    keep = m["average"].isna() | m["average"].isin(["binary"] if task.type == "binary"
                                                    else ["macro"])
    return m[keep]


def _comparisons(console, comparisons) -> None:
    """Champion vs challenger, overall slice: per pair, task and metric the difference of the
    last window with its paired interval and adjusted p-value, and how many slice x window
    cells differ significantly (Benjamini-Hochberg)."""
    if comparisons is None or comparisons.empty:
        return
    c = comparisons
    t = Table(title="champion vs challenger (overall, last window; difference = candidate - "
                    "baseline, 95% paired interval)")
    for col in ("task", "candidate - baseline", "metric", "difference", "interval",
                "p (BH)", "significant slices"):
        t.add_column(col)
    for (task, base, cand, metric), part in c.groupby(["task", "baseline", "candidate",
                                                       "metric"], sort=True):
        ov = part[part["slice"] == "overall"].sort_values("window_start")
        if ov.empty:
            continue
        r = ov.iloc[-1]
        rest = part[part["slice"] != "overall"]
        t.add_row(task, f"{cand} - {base}", metric, _f(r.difference),
                  f"[{_f(r.ci_lower)}, {_f(r.ci_upper)}]", _f(r.p_adjusted),
                  f"{int(rest['significant'].sum())}/{len(rest)}")
    console.print(t)


def print_summary(console: Console, cfg: JobConfig, result, short: bool = False) -> None:
    """Print counts and durations, overall metrics per window and model, the worst slices per
    window and model (over every slice column and cross), drifted columns, gate verdicts and
    where the outputs are (``short``: only the last 8 windows)."""
    fin = result.finalized
    m = fin.metrics
    c = fin.counters
    console.rule(f"[bold]rayeval run {result.run_id}")
    ref_only = c.get("rows_reference_only", 0)
    console.print(f"rows read {c.get('rows_read', 0):,}"
                  + (f" (drift reference only {ref_only:,})" if ref_only else "")
                  + f" | evaluated {c.get('rows_evaluated', 0):,}"
                  f" | labelled {c.get('rows_labeled', 0):,} | duplicates dropped "
                  f"{c.get('rows_duplicate_prediction', 0):,}"
                  + (f" (across batches, kept: {c['rows_duplicate_across_batches']:,})"
                     if c.get("rows_duplicate_across_batches") else "")
                  + f" | missing id "
                  f"{c.get('rows_missing_id', 0):,} | missing timestamp "
                  f"{c.get('rows_missing_timestamp', 0):,}"
                  + (f" | unparseable timestamp {c['rows_unparseable_timestamp']:,}"
                     if c.get("rows_unparseable_timestamp") else "")
                  + " | durations "
                  + ", ".join(f"{k} {v:.1f}s" for k, v in result.durations.items()))
    invalid = result.manifest.get("row_counts", {}).get("invalid", {})
    if any(invalid.values()):
        top = sorted(((v, k) for k, v in invalid.items() if v), reverse=True)
        console.print(f"[yellow]excluded rows[/yellow] (task/family/reason, see invalid/): "
                      + ", ".join(f"{k} {v:,}" for v, k in top[:6])
                      + (f" and {len(top) - 6} more" if len(top) > 6 else ""), highlight=False)
    for w in result.manifest.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    for task in cfg.tasks:
        tm = headline(m[(m["task"] == task.name) & (m["slice"] == "overall")], task)
        if tm.empty:
            continue
        # windows.size none: window_start is null, which pivot_table would drop
        tm = tm.assign(window_start=tm["window_start"].astype(object).where(
            tm["window_start"].notna(), "all data"))
        pv = tm.pivot_table(index=["window_start", "model"], columns="metric", values="value",
                            aggfunc="first", dropna=False)
        half = None
        if "ci_lower" in tm and tm["ci_lower"].notna().any():  # intervals: value +- half width
            half = ((tm["ci_upper"] - tm["ci_lower"]) / 2).to_frame("h").join(tm[[
                "window_start", "model", "metric"]]).pivot_table(
                index=["window_start", "model"], columns="metric", values="h",
                aggfunc="first", dropna=False).reindex(index=pv.index, columns=pv.columns)
        title = f"{task.name}: overall per window"
        if half is not None:
            title += f" (+- half the {cfg.intervals.level:.0%} interval)"
        t = Table(title=title, show_lines=False)
        t.add_column("window")
        t.add_column("model")
        for col in pv.columns:
            t.add_column(col, justify="right")
        rows = list(pv.iterrows())
        for (win, model), vals in (rows[-8:] if short else rows):
            hw = half.loc[(win, model)] if half is not None else [float("nan")] * len(vals)
            t.add_row(_day(win), str(model), *[_f(v) + (f" ±{h:.3f}" if h == h else "")
                                               for v, h in zip(vals, hw)])
        console.print(t)
        _worst(console, cfg, m, task, short=short)
    if result.drift is not None and not result.drift.empty:
        d = result.drift
        # one verdict row per column, window and slice: the same rows the report counts
        dd = d[(d["slice"] == "overall") & (d["kind"] != "dataset") & d["drifted"].astype(bool)]
        t = Table(title="drift (overall slice): windows in which each column drifted "
                  "(verdict of its deciding method)")
        for col in ("model", "kind", "feature", "method", "windows drifted", "max statistic"):
            t.add_column(col)
        if not dd.empty:
            g = dd.groupby(["model", "kind", "feature", "method"]).agg(
                n=("drifted", "size"), mx=("statistic", "max")).reset_index()
            n_win = d["window_start"].nunique(dropna=False)
            for r in g.sort_values(["n", "model"], ascending=False).head(20).itertuples():
                t.add_row(str(r.model), r.kind, r.feature, r.method, f"{r.n}/{n_win}", _f(r.mx))
        console.print(t if not dd.empty else "drift: no column drifted in the overall slice")
    _comparisons(console, result.finalized.comparisons)
    if not result.gates.empty:
        g = result.gates
        failed = g[~g["passed"]]
        names = sorted({escape(f"{r.rule}[{r.model}]") for r in failed.itertuples()})
        console.print(f"gates: {len(g) - len(failed)}/{len(g)} checks passed"
                      + ("" if failed.empty else "; failed: " + ", ".join(names)))
    blessing = getattr(result, "blessing", None) or {}
    if blessing:
        console.print(f"verdict: [bold]{blessing['status']}[/bold]")
        for rule in blessing.get("failing_rules", []):
            worst = "; ".join(f"{w['slice']} ({w['model']}, {(w['window_start'] or '')[:10]}): "
                              f"{w['reason']}" for w in rule["worst"][:3])
            console.print(escape(f"  {rule['rule']}: {rule['n_failed']} failed check(s), "
                                 f"worst: {worst}"))
    console.rule("outputs")
    for rel, path in sorted(result.outputs.items()):
        console.print(f"  {rel.split('/')[0]:<10} {path}", soft_wrap=True, highlight=False)
    console.print("  open the tables: python -c \"import pandas as pd; print(pd.read_parquet("
                  f"'{cfg.outputs.path}/metrics'))\"", soft_wrap=True,
                  highlight=False)
    if result.mlflow_run_id:
        uri = result.manifest.get("mlflow", {}).get("tracking_uri", "")
        browse = (f"open {uri} in a browser" if uri.startswith(("http://", "https://"))
                  else f"mlflow ui --backend-store-uri {uri}")
        console.print(f"  MLflow run {result.mlflow_run_id} in {uri} (browse: {browse})",
                      soft_wrap=True, highlight=False)
    reports = [p for r, p in result.outputs.items() if r.startswith("reports/")]
    if reports:
        console.print(f"  report: open file://{reports[0]} in a browser", soft_wrap=True,
                      highlight=False)


def _worst(console, cfg, m, task, n: int = 3, short: bool = False) -> None:
    """Per window and model, the ``n`` worst credible slices of every slice column and cross
    (the task's first headline metric, :func:`rayeval.core.registry.rank_metric`, ranked by
    its good-side bound, :func:`rayeval.io.attention.rank_worst`, as in the report; slices with
    fewer than ``max(min_slice_size, 30)`` labelled rows left out)."""
    metric = registry.rank_metric(task)
    if metric is None:
        return
    floor = max(30, cfg.slices.min_slice_size)
    sel = m[(m["task"] == task.name) & (m["slice"] != "overall") & (m["metric"] == metric)
            & m["class_label"].isna() & m["value"].notna() & (m["n_labeled"] >= floor)]
    if task.type == "binary":
        sel = sel[sel["average"].isna() | (sel["average"] == "binary")]
    if sel.empty:
        return
    if "direction" not in sel.columns:  # tables written before the column existed
        sel = sel.assign(direction=registry.task_metrics(task)[metric].direction)
    sel = rank_worst(sel, m[(m["task"] == task.name) & (m["slice"] != "overall")])
    sel = sel.assign(window_start=sel["window_start"].astype(object).where(
        sel["window_start"].notna(), "all data"))
    t = Table(title=f"{task.name}: worst {n} credible slices per window by {metric} "
              f"(any slice column; >= {floor} labelled rows; ranked by the best value the "
              f"data allows)")
    for c in ["window", "model"] + [f"#{i + 1}" for i in range(n)]:
        t.add_column(c)
    rows = list(sel.groupby(["window_start", "model"], sort=True))
    n_models = sel["model"].nunique()
    keep = (4 if short else 8) * n_models  # the latest windows (all of them are in metrics/)
    if len(rows) > keep:
        t.caption = f"latest {keep // n_models} of {len(rows) // n_models} windows"
    for (win, model), part in rows[-keep:]:
        cells = [f"{r.slice}: {_f(r.value)} (n={int(r.n_labeled):,})"
                 for r in part.head(n).itertuples()]
        t.add_row(_day(win), str(model), *(cells + [""] * (n - len(cells))))
    console.print(t)


def _f(v) -> str:
    try:
        return "nan" if pd.isna(v) else f"{float(v):.4f}"
    except (TypeError, ValueError):
        return str(v)


def _day(ts) -> str:
    if isinstance(ts, str):
        return ts
    return "all" if pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")
