"""HTML building blocks of the reports (private): safe markup, escaping, value formatting,
tables and notes. Shared by :mod:`rayeval.io.report` and its sections.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

_NAT = np.iinfo(np.int64).min  # a window key of 'no window'


class _Html(str):
    """Markup that is already safe (not escaped again by :func:`_table`)."""


class _Num(_Html):
    """Safe markup of a number (right-aligned cell)."""


def _signed(v: float) -> _Num:
    return _Num("—" if _isnan(v) else f"{v:+.4f}")


def _pct(v: float) -> _Num:
    return _Num("—" if _isnan(v) else f"{v:.1%}")


def _e(x: object) -> str:
    return escape("" if x is None else str(x), quote=True)


def _isnan(v: object) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _fmt(v: object) -> str:
    """Human formatting of a table value (not escaped)."""
    if _isnan(v):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    if isinstance(v, pd.Timestamp):
        return _wlabel(v)
    return str(v)


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        tds = []
        for v in row:
            if isinstance(v, _Html):
                tds.append(f'<td class="num">{v}</td>' if isinstance(v, _Num) else f"<td>{v}</td>")
            else:
                num = isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                tds.append(f'<td class="num">{_e(_fmt(v))}</td>' if num else
                           f"<td>{_e(_fmt(v))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table>")


def _val(v: float, ci_lo=None, ci_hi=None, bound=None, reason=None) -> _Html:
    """A metric value cell: the value, with CI / error bound / undefined reason as tooltip."""
    if _isnan(v):
        return _Html(f'<span class="na" title="{_e(reason or "undefined")}">—</span>')
    tip = []
    if not _isnan(ci_lo) and not _isnan(ci_hi):
        tip.append(f"CI [{_fmt(ci_lo)}, {_fmt(ci_hi)}]")
    if not _isnan(bound) and bound > 0:
        tip.append(f"error bound ±{_fmt(bound)}")
    title = f' title="{_e("; ".join(tip))}"' if tip else ""
    return _Html(f'<span class="v"{title}>{_e(_fmt(v))}</span>')


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


# ----------------------------------------------------------------------------------- sections


def _wlabel(k: object) -> str:
    if isinstance(k, (int, np.integer)):
        if k == _NAT:
            return "all data"
        k = pd.Timestamp(int(k), tz="UTC")
    if _isnan(k):
        return "all data"
    k = pd.Timestamp(k)
    return k.strftime("%Y-%m-%d") if (k.hour, k.minute, k.second) == (0, 0, 0) else \
        k.strftime("%Y-%m-%d %H:%M")
