"""Bad input catalogue, part 2 (part 1: tests/test_bad_input.py; the README's Reliability section
lists every kind and its test). Each kind runs through the CLI's ``execute`` on the shared local
Ray and asserts the exit code and either a clear error naming file/column (exit 2, nothing
written: not even the output folder) or a counted exclusion in the manifest (exit 0)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayeval.cli import execute
from rayeval.config import load_config
from tests.synth import job_dict, make_frames


@pytest.fixture(scope="module")
def frame():
    preds, labels = make_frames(800, seed=13)
    lab = labels.sort_values("label_ts").drop_duplicates("id", keep="last")
    return preds.merge(lab[["id", "label", "target"]], on="id", how="left")


def write(df: pd.DataFrame | pa.Table, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(t, path)


# --- each builder writes the predictions under d and returns config overrides ---------------

def truncated(df, d):
    write(df, d / "a.parquet")
    raw = (d / "a.parquet").read_bytes()
    (d / "b.parquet").write_bytes(raw[: len(raw) // 2])  # a copy cut in the middle
    return {}


def zero_bytes(df, d):
    write(df, d / "a.parquet")
    (d / "b.parquet").write_bytes(b"")
    return {}


def not_parquet(df, d):
    write(df, d / "a.parquet")
    (d / "b.parquet").write_text(df.head(5).to_csv())  # a CSV with the wrong extension
    return {}


def epoch_int_timestamps(df, d):
    write(df.assign(timestamp=df["timestamp"].astype("int64") // 10**9), d / "a.parquet")
    return {}


def all_null_timestamps(df, d):
    t = pa.Table.from_pandas(df, preserve_index=False)
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp",
                     pa.nulls(len(df), pa.null()))
    write(t, d / "a.parquet")
    return {}


def struct_labels(df, d):
    t = pa.Table.from_pandas(df.drop(columns=["label"]), preserve_index=False)
    t = t.append_column("label", pa.array([{"v": 1}] * len(df)))
    write(t, d / "a.parquet")
    return {}


def list_scores(df, d):
    t = pa.Table.from_pandas(df.drop(columns=["score"]), preserve_index=False)
    t = t.append_column("score", pa.array([[0.5]] * len(df)))
    write(t, d / "a.parquet")
    return {}


def inf_scores(df, d):
    out = df.copy()
    out.loc[:9, "score"] = np.inf
    out.loc[10:14, "score"] = -np.inf
    write(out, d / "a.parquet")
    return {}


def null_timestamps(df, d):
    out = df.copy()
    out.loc[:19, "timestamp"] = pd.NaT
    write(out, d / "a.parquet")
    return {}


def unparseable_timestamps(df, d):
    out = df.assign(timestamp=df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
    out.loc[:7, "timestamp"] = "not a date"
    write(out, d / "a.parquet")
    return {}


def clock_skew(df, d):
    out = df.copy()
    out.loc[:24, "timestamp"] = pd.Timestamp("2099-01-01", tz="UTC")  # a clock decades ahead
    out.loc[25:29, "timestamp"] = pd.Timestamp("1970-01-01", tz="UTC")  # an unset clock
    write(out, d / "a.parquet")
    return {"windows": {"size": "week", "start": "2024-01-01", "end": "2024-01-22"}}


def non_utf8_slices(df, d):
    t = pa.Table.from_pandas(df.drop(columns=["segment"]), preserve_index=False)
    seg = [b"\xff\xfe" + s.encode() if i % 3 == 0 else s.encode()
           for i, s in enumerate(df["segment"])]
    write(t.append_column("segment", pa.array(seg, pa.binary())), d / "a.parquet")
    return {}


def ids_collide_across_models(df, d):
    write(df, d / "a.parquet")  # both models carry the same ids: not duplicates
    return {"policy": {"duplicate_predictions": "error"}}


def null_slice_values(df, d):
    out = df.copy()
    out["segment"] = out["segment"].astype(object)
    out.loc[:49, "segment"] = None
    write(out, d / "a.parquet")
    return {}


def duplicate_column_names(df, d):
    t = pa.Table.from_pandas(df, preserve_index=False)
    t = pa.Table.from_arrays(t.columns + [t["score"]], names=t.column_names + ["score"])
    write(t, d / "a.parquet")
    return {}


ERRORS = [  # (kind, builder, words the message must hold)
    ("truncated Parquet file", truncated, ["b.parquet", "footer"]),
    ("zero-byte .parquet file", zero_bytes, ["b.parquet", "0 bytes"]),
    ("CSV named .parquet", not_parquet, ["b.parquet", "footer"]),
    ("timestamp as integer epoch", epoch_int_timestamps, ["'timestamp'", "int64"]),
    ("timestamp null in every file", all_null_timestamps, ["'timestamp'", "null"]),
    ("label of a struct type", struct_labels, ["'label'", "struct"]),
    ("score of a list type", list_scores, ["'score'", "list"]),
    ("non-UTF-8 bytes in a slice column", non_utf8_slices, ["'segment'", "binary", "800 rows"]),
    ("duplicate column names", duplicate_column_names, ["a.parquet", "duplicate column", "'score'"]),
]


@pytest.mark.parametrize("kind,build,needles", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_is_a_clear_error_with_nothing_written(tmp_path, frame, kind,
                                                         build, needles, capsys):
    extra = build(frame, tmp_path / "p")
    cfg = load_config(data=job_dict(str(tmp_path / "p"), None, str(tmp_path / "out"), **extra))
    assert execute(cfg, quiet=True) == 2
    err = " ".join(capsys.readouterr().err.split())
    for n in needles:
        assert n in err, err
    assert not (tmp_path / "out").exists()


COUNTED = [  # (kind, builder, manifest path -> expected count or check)
    ("inf and -inf scores", inf_scores, {"invalid.clf/scores/score_out_of_range": 15}),
    ("missing timestamps", null_timestamps, {"rows_missing_timestamp": 20}),
    ("unparseable timestamp text", unparseable_timestamps, {"rows_unparseable_timestamp": 8}),
    ("clock-skewed timestamps", clock_skew, {"rows_out_of_range": 30}),
    ("ids shared by two models", ids_collide_across_models, {"rows_duplicate_prediction": 0}),
]


def _get(counts: dict, path: str):
    head, _, rest = path.partition(".")
    return counts[head][rest] if rest else counts[head]


@pytest.mark.parametrize("kind,build,expected", COUNTED, ids=[c[0] for c in COUNTED])
def test_bad_rows_are_counted_exclusions(ray_local, tmp_path, frame, kind, build, expected):
    extra = build(frame, tmp_path / "p")
    cfg = load_config(data=job_dict(str(tmp_path / "p"), None, str(tmp_path / "out"), **extra))
    assert execute(cfg, quiet=True) == 0
    manifest = json.loads(next((tmp_path / "out" / "manifests").glob("*.json")).read_text())
    counts = manifest["row_counts"]
    for path, n in expected.items():
        assert _get(counts, path) == n, (path, counts)
    assert counts["rows_evaluated"] > 0


def test_null_slice_values_form_their_own_slice(ray_local, tmp_path, frame):
    null_slice_values(frame, tmp_path / "p")
    cfg = load_config(data=job_dict(str(tmp_path / "p"), None, str(tmp_path / "out")))
    assert execute(cfg, quiet=True) == 0
    cov = pd.read_parquet(tmp_path / "out" / "coverage")
    seg = cov[(cov.slice_columns == "segment") & (cov.model == "champion")]
    assert int(seg["n_rows"].sum()) == 400  # no row lost to a null slice value
