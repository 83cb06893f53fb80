"""Scheduled evaluation: the latest window whose labels are mature.

    ray job submit --working-dir . -- python jobs/scheduled.py --config configs/flights.yaml \
        --label-delay-hours 72 [--now 2001-07-01T00:00:00]

A window ``[s, e)`` is mature when ``e + label delay <= now``; the latest mature window of the
config's window size is evaluated with run id ``<name>-<window start>`` (a rerun replaces it).
The label delay is ``--label-delay-hours``, else the config's ``windows.mature_after``, else
72 h; ``windows.as_of`` is set to ``now``, so the run's own maturity rule agrees.
"""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from _common import load, parser, run

from rayeval.config import parse_duration
from rayeval.slicing import to_utc_ns, window_end, window_starts


def latest_mature_window(now: datetime, delay: timedelta, size: str) -> tuple[pd.Timestamp,
                                                                              pd.Timestamp]:
    """``(start, end)`` of the latest window of ``size`` with ``end + delay <= now``."""
    if size == "none":
        raise SystemExit("error: scheduled runs need windows.size other than 'none'")
    cutoff = to_utc_ns(pd.DatetimeIndex([now - delay]))
    start = int(window_starts(cutoff, size)[0])  # window containing the cutoff: not complete
    prev = int(window_starts(np.array([start - 1], dtype=np.int64), size)[0])
    return pd.Timestamp(prev, tz="UTC"), pd.Timestamp(window_end(prev, size), tz="UTC")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--label-delay-hours", type=float, default=None,
                   help="default: windows.mature_after of the config, else 72")
    p.add_argument("--now", default=None, help="UTC reference time (default: now)")
    args = p.parse_args()
    base = load(args, [])
    now = pd.Timestamp(args.now, tz="UTC") if args.now else datetime.now(timezone.utc)
    if args.label_delay_hours is not None:
        delay = timedelta(hours=args.label_delay_hours)
    elif base.windows.mature_after:
        delay = parse_duration(base.windows.mature_after)
    else:
        delay = timedelta(hours=72)
    s, e = latest_mature_window(now, delay, base.windows.size)
    cfg = load(args, [f"windows.start={s.isoformat()}", f"windows.end={e.isoformat()}",
                      f"windows.as_of={pd.Timestamp(now).isoformat()}",
                      f"run_id={base.name}-{s.strftime('%Y%m%dT%H%M')}"])
    run(cfg, args.quiet)


if __name__ == "__main__":
    main()
