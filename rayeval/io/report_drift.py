"""Report section: drift per feature, the reference vs current histogram of the latest window
and the decision statistic over windows with its threshold, bounded (imported by
:mod:`rayeval.io.report`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rayeval.drift.methods import METHODS
from rayeval.io._html import _Html, _e, _note, _table, _wlabel
from rayeval.io._report_data import (_DRIFT_OPTIONAL, MAX_BINS, MAX_FEATURES, TOP_N, _ensure,
                                     _usable, _windows, _with_w)
from rayeval.io._svg import CUR_COLOR, REF_COLOR, bar_chart, line_chart


#: drift methods that are tests: drift when p_value < threshold (else statistic >= threshold)
TEST_METHODS = frozenset(n for n, m in METHODS.items() if m.test)


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
