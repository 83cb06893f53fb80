"""Backfill: evaluate every window of a date range, each as its own committed run, resumably.

    ray job submit --working-dir . -- python jobs/backfill.py --config configs/flights.yaml \
        --start 2001-02-05 --end 2001-07-01 [--no-resume]

Each window ``[s, e)`` of ``windows.size`` gets run id ``<name>-<s:%Y%m%dT%H%M>`` (the run id
the scheduled job gives it). ``--resume`` (default) skips windows already committed with the
same config and inputs; a window whose inputs changed is recomputed and replaced (its manifest
and audit record say why). Exit code: 4 on a failure that stops the backfill, else 2 if a
window had bad input, else 3 if MLflow or Pushgateway publishing failed, else 1 if a gate
failed, else 0.
"""

import sys

from _common import load, parser


def main() -> None:
    from rayeval.cli import EXIT_ERROR, EXIT_GATES, EXIT_INPUT, EXIT_MLFLOW
    from rayeval.engine.backfill import run_backfill
    from rayeval.engine.session import ray_session

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--start", required=True, help="inclusive UTC date/time")
    p.add_argument("--end", required=True, help="exclusive UTC date/time")
    p.add_argument("--resume", action="store_true", default=True,
                   help="skip windows committed with the same config and inputs (default)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="recompute every window")
    args = p.parse_args()
    cfg = load(args, [f"windows.start={args.start}", f"windows.end={args.end}"])

    def show(o):
        print(f"window [{o.start}, {o.end}) {o.run_id}: {o.status} ({o.reason})", flush=True)

    try:
        with ray_session(cfg.ray):
            outcomes = run_backfill(cfg, cfg.windows.start, cfg.windows.end, args.resume,
                                    progress=show)
    except Exception as e:  # a worker died, a concurrent commit, Ray failed to start...
        print(f"backfill failed: {type(e).__name__}: {e}\nwindows committed before this one "
              f"stay committed; rerun to resume.", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)
    results = [o.result for o in outcomes if o.result is not None]
    counts = {s: sum(o.status == s for o in outcomes)
              for s in ("computed", "recomputed", "skipped", "failed")}
    print("backfill: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if counts["failed"]:
        raise SystemExit(EXIT_INPUT)
    if any(r.mlflow_error or getattr(r, "publish_error", None) for r in results):
        raise SystemExit(EXIT_MLFLOW)
    if not all(r.gates_passed for r in results):
        raise SystemExit(EXIT_GATES)
    raise SystemExit(0)


if __name__ == "__main__":
    main()
