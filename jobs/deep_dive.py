"""Deep dive: one slice, finer crosses, every metric, daily windows.

    ray job submit --working-dir . -- python jobs/deep_dive.py --config configs/flights.yaml \
        --filter origin=ORD --crosses destination,hour_band --crosses hour_band,distance_band

``--filter COLUMN=VALUE`` (repeatable) keeps only matching rows; ``--crosses a,b`` (repeatable)
replaces the config's crosses; windows default to ``day``. The run id names the filter. Gates are
off: production gates are not meant for one slice at daily resolution.
"""

from _common import load, parser, run, run_id_part


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--filter", action="append", default=[], required=True, metavar="COL=VALUE")
    p.add_argument("--crosses", action="append", default=[], metavar="A,B")
    p.add_argument("--window", default="day")
    args = p.parse_args()
    base = load(args, [])
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        col, _, val = f.partition("=")
        if not col or not _:
            raise SystemExit(f"error: --filter expects COLUMN=VALUE, got {f!r}")
        filters.setdefault(col, []).append(val)
    extra = [f"filters={filters}", f"windows.size={args.window}", "gates=[]",
             "slices.min_slice_size=1",
             f"run_id={base.name}-deep-dive-" + run_id_part("-".join(
                 f"{k}_{'_'.join(v)}" for k, v in filters.items()))]
    if args.crosses:
        extra.append(f"slices.crosses={[c.split(',') for c in args.crosses]}")
    run(load(args, extra), args.quiet)


if __name__ == "__main__":
    main()
