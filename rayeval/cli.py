"""``rayeval`` command line: ``run``, ``validate``, ``demo``, ``report`` (thin: parse, call the
engine, print).

Exit codes (as in the README): 0 success; 1 a gate failed (a data-quality rule of
``policy.max_invalid_share`` included; results written); 2 bad config or bad input (nothing
written); 3 results written but publishing failed (MLflow logging or the Prometheus Pushgateway
push); 4 any other failure (e.g. Ray could not start, a model that raised while scoring; nothing
committed); 5 results written but acting on the verdict in the model registry failed (the
message names the failed step; the registry is as it was unless it says otherwise); 6 the model
registry was unreachable before scoring (nothing written).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from rayeval.config import ConfigError, JobConfig, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Evaluate ML models in production on Ray: per-slice, per-window metrics, "
                       "drift and gates, written to Parquet and MLflow.")
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

EXIT_GATES, EXIT_INPUT, EXIT_PUBLISH, EXIT_ERROR, EXIT_ACTIONS, EXIT_REGISTRY = 1, 2, 3, 4, 5, 6
EXIT_MLFLOW = EXIT_PUBLISH  # the older name of exit code 3


def _version(value: bool) -> None:
    if value:
        import rayeval

        console.print(f"rayeval {rayeval.__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """Evaluate ML models in production on Ray: per-slice, per-window metrics, drift and gates,
    written to Parquet and MLflow."""


def _print_error(e: BaseException) -> None:
    """``error: <message>`` on stderr, the message taken literally (no Rich markup)."""
    err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)


BASE_DIR_HELP = ("directory that relative local paths of the config are relative to "
                 "(default: RAYEVAL_BASE_DIR, else the current directory)")


def _load(config: Path, overrides: list[str] | None, base_dir: str | None = None) -> JobConfig:
    try:
        return load_config(config, overrides or [], base_dir=base_dir)
    except ConfigError as e:
        _print_error(e)
        raise typer.Exit(EXIT_INPUT)


@app.command()
def validate(config: Path = typer.Argument(..., help="YAML job config"),
             set_: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value"),
             skip_inputs: bool = typer.Option(False, "--skip-inputs",
                                              help="check the config only, not its inputs"),
             base_dir: Optional[str] = typer.Option(None, "--base-dir", help=BASE_DIR_HELP)):
    """Validate a job config and its inputs (paths exist, Parquet footers read, required
    columns present; no Ray is started), and print the resolved run id."""
    cfg = _load(config, set_, base_dir)
    from rayeval.engine.gates import check_gates
    from rayeval.engine.quality import check_quality_policy

    try:
        check_gates(cfg)
        check_quality_policy(cfg)
        info = None if skip_inputs else _preflight(cfg)
    except ConfigError as e:
        _print_error(e)
        raise typer.Exit(EXIT_INPUT)
    console.print(f"[green]ok[/green] {config}: run_id={cfg.resolved_run_id()} "
                  f"tasks={[t.name for t in cfg.tasks]} slices={len(cfg.slice_specs())} specs, "
                  f"windows={cfg.windows.size}", highlight=False)
    if info is not None:
        for name, ds in (("predictions", info.predictions), ("labels", info.labels)):
            if ds is not None:
                console.print(f"  {name}: {ds.num_rows:,} rows in {len(ds.files):,} file(s) "
                              f"under {ds.uri}", highlight=False, soft_wrap=True)
        for w in info.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


def _preflight(cfg: JobConfig):
    """:func:`~rayeval.engine.preflight.inspect_inputs` (no Ray); an input error is printed
    and exits 2, an unreachable model registry exits 6."""
    from rayeval.engine.preflight import InputError, inspect_inputs
    from rayeval.io.models import RegistryUnavailable

    try:
        return inspect_inputs(cfg)
    except InputError as e:
        _print_error(e)
        err.print("nothing was written (the inputs were checked before Ray started).")
        raise typer.Exit(EXIT_INPUT)
    except RegistryUnavailable as e:
        _print_error(e)
        err.print("nothing was written (the inputs were checked before Ray started).")
        raise typer.Exit(EXIT_REGISTRY)


@app.command()
def run(config: Path = typer.Argument(..., help="YAML job config"),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value override"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress, short summary"),
        base_dir: Optional[str] = typer.Option(None, "--base-dir", help=BASE_DIR_HELP),
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="evaluate, then print the registry actions the "
                                          "verdict calls for without making them")):
    """Run an evaluation job: read (or score registered models), evaluate per slice and window,
    write Parquet and MLflow, then act on the verdict in the model registry (``actions:``)."""
    cfg = _load(config, set_, base_dir)
    raise typer.Exit(execute(cfg, quiet=quiet, dry_run=dry_run))


class ProgressLines:
    """Progress as plain lines for a non-terminal stdout: each stage when it starts, and the
    rows done / total of a pass at most every ``seconds`` (``RAYEVAL_PROGRESS_SECONDS``,
    default 10) and when it ends."""

    def __init__(self, out: Console, seconds: float | None = None):
        self.out, self.t0 = out, time.monotonic()
        self.seconds = seconds if seconds is not None else float(
            os.environ.get("RAYEVAL_PROGRESS_SECONDS", "10"))
        self.last, self.stage = -math.inf, None

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        stage = line.split(":", 1)[0]
        rows = ":" in line
        done = rows and ": done, " in line
        if rows and stage == self.stage and not done and now - self.last < self.seconds:
            return
        self.last, self.stage = now, (stage if rows else None)
        self.out.print(f"[{now - self.t0:6.1f}s] {line}", markup=False, highlight=False,
                       soft_wrap=True)


def execute(cfg: JobConfig, quiet: bool = False, dry_run: bool = False) -> int:
    """Run ``cfg`` in a Ray session, print the summary, act on the verdict (``actions``;
    ``dry_run``: print the plan only), return the exit code."""
    from rayeval.engine.preflight import inspect_inputs
    from rayeval.engine.run import run_job
    from rayeval.engine.scoring import ScoringError
    from rayeval.engine.session import ray_session
    from rayeval.io.models import RegistryUnavailable
    from rayeval.io.readers import InputError
    from rayeval.summary import print_summary

    try:
        inputs = _preflight(cfg)  # before Ray's start-up: a missing path fails in a second
    except ConfigError as e:
        _print_error(e)
        return EXIT_INPUT
    except typer.Exit as e:
        return e.exit_code
    try:
        with ray_session(cfg.ray):
            if quiet:
                result = run_job(cfg, inputs=inputs)
            elif console.is_terminal:
                with console.status("starting") as status:
                    result = run_job(cfg, progress=lambda s: status.update(f"rayeval: {s}"),
                                     inputs=inputs)
            else:  # a log file or `ray job logs`: plain lines
                result = run_job(cfg, progress=ProgressLines(console), inputs=inputs)
    except (InputError, ConfigError) as e:
        _print_error(e)
        err.print("nothing was written.")
        return EXIT_INPUT
    except RegistryUnavailable as e:
        _print_error(e)
        err.print("nothing was written.")
        return EXIT_REGISTRY
    except ScoringError as e:
        _print_error(e)
        err.print("nothing was written.")
        return EXIT_ERROR
    except Exception as e:  # Ray failed to start, a worker died, ...: not a gate verdict (1)
        err.print_exception(max_frames=8)
        err.print(f"[red]run failed:[/red] {escape(f'{type(e).__name__}: {e}')}\n"
                  "nothing was committed (outputs are written atomically).", highlight=False)
        return EXIT_ERROR
    print_summary(console, cfg, result, short=quiet)
    if cfg.actions.enabled or (dry_run and cfg.inputs.models is not None):
        from rayeval.engine.acting import act_on_verdict
        from rayeval.io.registry_actions import ActionError

        try:
            written = act_on_verdict(cfg, result, dry_run or not cfg.actions.enabled,
                                     say=lambda s: console.print(s, highlight=False,
                                                                 markup=False))
            if written:
                console.print(f"actions recorded: {written}", highlight=False)
        except ActionError as e:
            err.print(f"[red]acting on the verdict failed:[/red] {escape(str(e))}\n"
                      f"Results are committed under {cfg.outputs.path}.", highlight=False)
            return EXIT_ACTIONS
    if result.mlflow_error:
        err.print(f"[red]MLflow logging failed:[/red] {escape(str(result.mlflow_error))}\n"
                  f"Results are in the Parquet tables under {cfg.outputs.path}.", highlight=False)
    if result.publish_error:
        err.print(f"[yellow]warning: publishing to Prometheus failed:[/yellow] "
                  f"{escape(str(result.publish_error))}\n"
                  f"Results are in the Parquet tables under {cfg.outputs.path}.", highlight=False)
    if result.mlflow_error or result.publish_error:
        return EXIT_PUBLISH
    if not result.gates_passed:
        return EXIT_GATES
    return 0


@app.command()
def rollback(model: str = typer.Argument(..., help="registered model name"),
             config: Path = typer.Option(..., "--config", help="job config (registry URI, "
                                         "outputs.path of the actions table)"),
             set_: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value"),
             dry_run: bool = typer.Option(False, "--dry-run", help="print, change nothing"),
             base_dir: Optional[str] = typer.Option(None, "--base-dir", help=BASE_DIR_HELP)):
    """Undo the last alias move rayeval made on MODEL (from its rayeval.move.* tags): the
    alias goes back to its previous version; recorded as a move in the actions table."""
    from rayeval.engine.acting import rollback as undo
    from rayeval.io.registry_actions import ActionError

    cfg = _load(config, set_, base_dir)
    try:
        written = undo(cfg, model, dry_run,
                       say=lambda s: console.print(s, highlight=False, markup=False))
    except ActionError as e:
        _print_error(e)
        raise typer.Exit(EXIT_ACTIONS)
    if written:
        console.print(f"actions recorded: {written}", highlight=False)


@app.command()
def report(output: str = typer.Argument(..., help="output path of a run (local or s3://)"),
           run_id: Optional[str] = typer.Option(None, "--run-id", help="run id to render "
                                                "(default: the latest run written to OUTPUT)"),
           out: Optional[Path] = typer.Option(None, "--out",
                                              help="HTML file (default: the run's report path)")):
    """Re-render the HTML report of a finished run from its written tables (default: the run
    whose manifest was written last)."""
    import json

    import pandas as pd

    from rayeval.io.report import render_report

    if run_id is None:
        run_id = latest_run_id(Path(output))

    def table(name):
        try:
            df = pd.read_parquet(f"{output}/{name}", filters=[("run_id", "==", run_id)])
        except (FileNotFoundError, OSError, ValueError):
            return None
        return df.drop(columns=["run_date"], errors="ignore")

    manifest_path = Path(output) / "manifests" / f"{run_id}.json"
    if not manifest_path.exists():
        err.print(f"[red]error:[/red] no run {run_id!r} under {output} ({manifest_path} missing)")
        raise typer.Exit(EXIT_INPUT)
    manifest = json.loads(manifest_path.read_text())
    metrics, coverage, gates = table("metrics"), table("coverage"), table("gates")
    drift = table("drift")
    hist = None
    if drift is not None:
        hist = table("drift_histograms")
    blessing_path = Path(output) / "blessing" / f"{run_id}.json"
    blessing = json.loads(blessing_path.read_text()) if blessing_path.exists() else None
    html = render_report(manifest.get("config", {}).get("name", "rayeval"), run_id, metrics,
                         coverage, drift, gates, hist, manifest, table("estimated"),
                         table("comparisons"), blessing)
    target = out or Path(output) / "reports" / f"{run_id}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html)
    console.print(f"report: {target}")


def latest_run_id(output: Path) -> str:
    """The run id of the manifest under ``output/manifests`` written last (its modification
    time: a run's manifest is written when it commits); exits 2 when there is none."""
    manifests = sorted((output / "manifests").glob("*.json"),
                       key=lambda p: (p.stat().st_mtime_ns, p.name))
    if not manifests:
        err.print(f"[red]error:[/red] no run under {escape(str(output))} (no manifests/*.json)",
                  highlight=False)
        raise typer.Exit(EXIT_INPUT)
    return manifests[-1].stem


@app.command()
def alerts(config: Path = typer.Argument(..., help="YAML job config"),
           out: Path = typer.Option(Path("monitoring"), "--out", help="output folder"),
           set_: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value")):
    """Generate the Prometheus alerting rules and the Grafana dashboard of a job config (over
    the families `outputs.prometheus` pushes): rayeval-rules.yml, rayeval-dashboard.json."""
    from rayeval.io.alerting import write_monitoring

    cfg = _load(config, set_)
    for kind, path in write_monitoring(cfg, out).items():
        console.print(f"{kind}: {path}")


@app.command()
def demo(out: Optional[Path] = typer.Option(None, help="output folder (default "
                                            "rayeval-output/flights[-sample-FRAC])"),
         data: Optional[Path] = typer.Option(None, help="example data folder (default "
                                             "examples/flights/bucket[-sample-FRAC])"),
         sample_frac: float = typer.Option(1.0, help="fraction of the 3M flights to use"),
         config: Path = typer.Option(Path("configs/flights.yaml"), help="job config")):
    """Prepare the flights example (if absent) and run the main job on it, locally. A sample
    gets its own data folder, output folder and run id, so it never mixes with the full run."""
    suffix = "" if sample_frac >= 1.0 else f"-sample-{sample_frac:g}"
    out = out or Path(f"rayeval-output/flights{suffix}")
    data = data or Path(f"examples/flights/bucket{suffix}")
    prep = Path("examples/flights/prepare.py")
    if not prep.exists():
        err.print("run `rayeval demo` from the rayeval repository root (examples/ not found)")
        raise typer.Exit(EXIT_INPUT)
    console.print(f"[bold]preparing example data[/bold] in {data} (skipped when present)")
    rc = subprocess.call([sys.executable, str(prep), "--out", str(data),
                          "--sample-frac", str(sample_frac)])
    if rc:
        raise typer.Exit(rc)
    overrides = [f"outputs.path={out}", f"inputs.predictions.uri={data}/predictions",
                 f"inputs.labels.uri={data}/labels"]
    if suffix:
        overrides.append(f"run_id={_load(config, []).name}{suffix}")
    cfg = _load(config, overrides)
    raise typer.Exit(execute(cfg))


def main() -> None:  # pragma: no cover
    """Entry point for ``python -m rayeval.cli``."""
    app()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    main()
