"""Backfill: evaluate every window of a date range.

    ray job submit --working-dir . -- python jobs/backfill.py --config configs/flights.yaml \
        --start 2001-02-05 --end 2001-07-01

The run id is ``<name>-backfill-<start>-<end>`` so a rerun of the same range replaces its output.
"""

from _common import load, parser, run, run_id_part


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--start", required=True, help="inclusive UTC date/time")
    p.add_argument("--end", required=True, help="exclusive UTC date/time")
    args = p.parse_args()
    base = load(args, [])
    cfg = load(args, [f"windows.start={args.start}", f"windows.end={args.end}",
                      f"run_id={base.name}-backfill-"
                      + run_id_part(f"{args.start}-{args.end}".replace(":", ""))])
    run(cfg, args.quiet)


if __name__ == "__main__":
    main()
