"""Shared argument handling of the ``ray job submit`` entry points (thin wrappers over the CLI)."""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rayeval.cli import execute  # noqa: E402
from rayeval.config import ConfigError, JobConfig, load_config  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="YAML job config")
    p.add_argument("--base-dir", default=None, metavar="DIR",
                   help="directory that relative local paths of the config (inputs, outputs) "
                        "are relative to; pass \"$PWD\" from the submitting shell (default: "
                        "RAYEVAL_BASE_DIR; a relative path is refused inside Ray's temporary "
                        "working_dir copy)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (repeatable)")
    p.add_argument("--quiet", action="store_true")
    return p


def run_id_part(text: str) -> str:
    """``text`` made safe for a run id (which names output files): other characters -> ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def load(args, extra: list[str]) -> JobConfig:
    try:
        return load_config(args.config, list(args.set) + extra, base_dir=args.base_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def run(cfg: JobConfig, quiet: bool) -> None:
    raise SystemExit(execute(cfg, quiet=quiet))
