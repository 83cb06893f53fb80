"""Prepare the rayeval flights example: train two delay models on January 2001, score every
flight with both, and write what a model-serving system would have logged.

Output layout (all hive-partitioned Parquet, one file per partition)::

    OUT/
      predictions/date=YYYY-MM-DD/part-0.parquet   # 2 rows per flight (one per model version)
      labels/date=YYYY-MM-DD/part-0.parquet        # partitioned by *label arrival* date
      _PREPARED.json                               # completion marker: parameters, counts, models

Usage::

    python examples/flights/prepare.py --out examples/flights/bucket [--sample-frac 0.01] [--seed 0]

or, from Python, :func:`prepare`. The run is idempotent (an existing complete dataset built with
the same parameters and source data is left untouched) and atomic (everything is written to a
hidden sibling temp directory that is renamed into place only when complete).

See ``examples/flights/README.md`` for the columns, the model definitions and the label policy.
This script is an example, not part of the ``rayeval`` package; it needs numpy, pandas, pyarrow
and scikit-learn only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FORMAT_VERSION = "flights-prepare/2"  # 2: smaller, faster challenger (60 trees)
MARKER = "_PREPARED.json"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
FLIGHTS_FILE = "flights-3m.parquet"
AIRPORTS_FILE = "airports.csv"

CHAMPION = "delay-logreg-v1"
CHALLENGER = "delay-hgb-v2"
MODELS = (CHAMPION, CHALLENGER)

DELAY_THRESHOLD_MIN = 15  # "delayed" = delay > 15 minutes (US DOT on-time definition)
DECISION_THRESHOLD = 0.5
TRAIN_END = pd.Timestamp("2001-02-01")  # train on [data start, TRAIN_END): January 2001
MAX_TRAIN_ROWS = 150_000  # January subsample cap: the whole preparation stays under 60 s on 2 cores
CHALLENGER_TREES = 60  # fixed (no early stopping): 300 early-stopped trees took 211 s on a busy VM
# OpenMP threads for the gradient-boosted trees. 1 by default: on a shared or busy 2-core machine
# OpenMP's spinning barriers made a 2-thread fit 10-20x slower than a 1-thread one.
OMP_THREADS = int(os.environ.get("FLIGHTS_PREPARE_THREADS", "1"))

DISTANCE_EDGES = np.array([250, 500, 1000, 2000])
DISTANCE_BANDS = ("<250", "250-500", "500-1000", "1000-2000", ">=2000")
HOUR_BANDS = ("night 0-5", "morning 6-11", "afternoon 12-17", "evening 18-23")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
UNKNOWN_STATE = "unknown"

# Label simulation policy (see README "Labels: simulated late arrival").
LABEL_LAG_MIN_H, LABEL_LAG_MAX_H = 2.0, 72.0
P_MISSING = 0.01  # flight never gets a label (yet)
P_DUPLICATE = 0.002  # flight gets a second, later label row
P_CORRECTED = 0.2  # share of duplicated flights whose first label was wrong
CORRECTION_LAG_MIN_H, CORRECTION_LAG_MAX_H = 1.0, 48.0

US = 1_000_000  # microseconds per second
HOUR_US = 3600 * US

PREDICTION_SCHEMA = pa.schema([
    ("prediction_id", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("model", pa.string()),
    ("predicted_delayed", pa.int8()),
    ("score", pa.float64()),
    ("predicted_delay", pa.float64()),
    ("origin", pa.string()),
    ("destination", pa.string()),
    ("origin_state", pa.string()),
    ("distance", pa.int64()),
    ("distance_band", pa.string()),
    ("hour", pa.int8()),
    ("hour_band", pa.string()),
    ("day_of_week", pa.string()),
])

LABEL_SCHEMA = pa.schema([
    ("prediction_id", pa.string()),
    ("delayed", pa.int8()),
    ("delay_minutes", pa.float64()),
    ("label_timestamp", pa.timestamp("us", tz="UTC")),
])


def _log(msg: str) -> None:
    print(f"[prepare] {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Loading and features
# --------------------------------------------------------------------------------------------

def load_flights(data_dir: Path, sample_frac: float = 1.0, seed: int = 0) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Load the source flights with derived features, optionally sampled.

    Returns ``(frame, as_of)``. ``frame`` keeps the source row index in ``row`` (the stable
    prediction id) and is in source (time) order; ``as_of`` is the last scheduled departure of
    the *full* source data, the moment the simulated snapshot is taken (labels arriving later
    are not in the dataset). Sampling draws exactly ``round(n * sample_frac)`` rows without
    replacement using ``seed``.
    """
    table = pq.read_table(data_dir / FLIGHTS_FILE, columns=["date", "delay", "distance", "origin", "destination"])
    n_source = table.num_rows
    as_of = pd.Timestamp(pc.max(table["date"]).as_py())
    if sample_frac < 1.0:
        rng = np.random.default_rng([seed, 1])
        k = max(1, int(round(n_source * sample_frac)))
        rows = np.sort(rng.choice(n_source, size=k, replace=False))
        table = table.take(pa.array(rows))
    else:
        rows = np.arange(n_source)
    df = pd.DataFrame({
        "row": rows.astype(np.int64),
        "date": table["date"].to_numpy(),
        "delay": table["delay"].to_numpy().astype(np.int64),
        "distance": table["distance"].to_numpy().astype(np.int64),
        "origin": table["origin"].to_numpy(zero_copy_only=False).astype(object),
        "destination": table["destination"].to_numpy(zero_copy_only=False).astype(object),
    })
    if not df["date"].is_monotonic_increasing:  # the source is time ordered; keep that invariant
        df = df.sort_values(["date", "row"], kind="stable").reset_index(drop=True)

    airports = pd.read_csv(data_dir / AIRPORTS_FILE, usecols=["iata", "state"], dtype=str, keep_default_na=False)
    airports = airports[airports["iata"] != ""].drop_duplicates("iata")
    state_of = dict(zip(airports["iata"], airports["state"]))
    origin_state = df["origin"].map(state_of)
    df["origin_state"] = origin_state.where(origin_state.notna() & (origin_state != ""), UNKNOWN_STATE).astype(object)

    ts = df["date"]
    df["hour"] = ts.dt.hour.astype(np.int8)
    df["dow"] = ts.dt.day_of_week.astype(np.int8)  # Monday = 0
    df["band"] = np.searchsorted(DISTANCE_EDGES, df["distance"].to_numpy(), side="right").astype(np.int8)
    df["hour_band_i"] = (df["hour"] // 6).astype(np.int8)
    df["delayed"] = (df["delay"] > DELAY_THRESHOLD_MIN).astype(np.int8)
    return df, as_of


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def _codes(values: pd.Series, categories) -> np.ndarray:
    """Integer codes against a fixed vocabulary; unknown values -> -1."""
    return pd.Index(categories).get_indexer(values).astype(np.int64)


def _champion_design(df: pd.DataFrame, vocab: dict) -> np.ndarray:
    """hour, day of week, distance band (one-hot later) and origin/destination codes (target-encoded later)."""
    return np.column_stack([
        df["hour"].to_numpy(np.int64), df["dow"].to_numpy(np.int64), df["band"].to_numpy(np.int64),
        _codes(df["origin"], vocab["airports"]), _codes(df["destination"], vocab["airports"]),
    ])


def _challenger_design(df: pd.DataFrame, vocab: dict) -> np.ndarray:
    """Raw features for the gradient-boosted trees; categories unseen in January become NaN (missing)."""
    def cat(col: str, key: str) -> np.ndarray:
        c = _codes(df[col], vocab[key]).astype(np.float64)
        c[c < 0] = np.nan
        return c
    return np.column_stack([
        df["hour"].to_numpy(np.float64), df["dow"].to_numpy(np.float64), df["distance"].to_numpy(np.float64),
        cat("origin", "jan_origins"), cat("destination", "jan_destinations"), cat("origin_state", "jan_states"),
    ])


CHALLENGER_CATEGORICAL = [False, True, False, True, True, True]  # hour, dow, distance, origin, destination, state


def _champion_pipeline(kind: str, seed: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, TargetEncoder

    encode = ColumnTransformer([
        ("onehot", OneHotEncoder(categories=[list(range(24)), list(range(7)), list(range(len(DISTANCE_BANDS)))],
                                 handle_unknown="ignore", sparse_output=False), [0, 1, 2]),
        # Smoothed ("auto" = empirical Bayes) target encoding, cross-fitted on the training rows so
        # the linear model does not see its own labels leak through the encoding.
        ("target", TargetEncoder(target_type="binary" if kind == "clf" else "continuous", smooth="auto",
                                 cv=(StratifiedKFold if kind == "clf" else KFold)(5, shuffle=True, random_state=seed)),
         [3, 4]),
    ])
    head = LogisticRegression(C=1.0, max_iter=500) if kind == "clf" else Ridge(alpha=1.0)
    return Pipeline([("encode", encode), ("model", head)])


def _challenger_model(kind: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    params = dict(learning_rate=0.2, max_iter=CHALLENGER_TREES, max_leaf_nodes=31, min_samples_leaf=100,
                  l2_regularization=1.0, categorical_features=CHALLENGER_CATEGORICAL, early_stopping=False,
                  random_state=seed)
    return HistGradientBoostingClassifier(**params) if kind == "clf" else HistGradientBoostingRegressor(**params)


def train_models(df: pd.DataFrame, seed: int = 0) -> tuple[dict, dict]:
    """Fit the two model bundles on January 2001 (subsampled to ``MAX_TRAIN_ROWS``).

    Returns ``(bundles, info)``: ``bundles[model] = (design_fn, classifier, regressor, vocab)``
    and ``info[model]`` a JSON-able description (features, training rows, iterations).
    """
    jan = df[df["date"] < TRAIN_END]
    if len(jan) > MAX_TRAIN_ROWS:
        rng = np.random.default_rng([seed, 2])
        jan = jan.iloc[np.sort(rng.choice(len(jan), size=MAX_TRAIN_ROWS, replace=False))]
    if len(jan) < 100 or jan["delayed"].nunique() < 2:
        raise ValueError(f"too little January training data ({len(jan)} rows); raise --sample-frac")
    vocab = {
        "airports": sorted(set(df["origin"]) | set(df["destination"])),  # label-free, so no leakage
        "jan_origins": sorted(set(jan["origin"])),
        "jan_destinations": sorted(set(jan["destination"])),
        "jan_states": sorted(set(jan["origin_state"])),
    }
    y_clf = jan["delayed"].to_numpy()
    y_reg = jan["delay"].to_numpy(np.float64)

    bundles, info = {}, {}
    t0 = time.perf_counter()
    x = _champion_design(jan, vocab)
    clf, reg = _champion_pipeline("clf", seed).fit(x, y_clf), _champion_pipeline("reg", seed).fit(x, y_reg)
    bundles[CHAMPION] = (_champion_design, clf, reg, vocab)
    info[CHAMPION] = {
        "classifier": "LogisticRegression(C=1)", "regressor": "Ridge(alpha=1)",
        "features": "one-hot hour, day_of_week, distance_band; smoothed cross-fitted target encoding of origin, destination",
        "train_rows": int(len(jan)), "train_seconds": round(time.perf_counter() - t0, 2),
    }
    t0 = time.perf_counter()
    x = _challenger_design(jan, vocab)
    clf, reg = _challenger_model("clf", seed).fit(x, y_clf), _challenger_model("reg", seed).fit(x, y_reg)
    bundles[CHALLENGER] = (_challenger_design, clf, reg, vocab)
    info[CHALLENGER] = {
        "classifier": f"HistGradientBoostingClassifier({CHALLENGER_TREES} trees)",
        "regressor": f"HistGradientBoostingRegressor({CHALLENGER_TREES} trees)",
        "features": "hour, day_of_week (cat), distance, origin (cat), destination (cat), origin_state (cat)",
        "train_rows": int(len(jan)), "classifier_iterations": int(clf.n_iter_), "regressor_iterations": int(reg.n_iter_),
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    return bundles, info


def _feature_key(df: pd.DataFrame, vocab: dict) -> np.ndarray:
    """One int64 per row identifying its full feature vector (hour, day, distance, origin, destination;
    origin_state and distance band are functions of these)."""
    assert len(vocab["airports"]) < (1 << 12) - 1 and 0 <= int(df["distance"].min()) and int(df["distance"].max()) < (1 << 27)
    origin = _codes(df["origin"], vocab["airports"]) + 1
    dest = _codes(df["destination"], vocab["airports"]) + 1
    key = df["distance"].to_numpy(np.int64)
    for part, width in ((origin, 1 << 12), (dest, 1 << 12), (df["hour"].to_numpy(np.int64), 32), (df["dow"].to_numpy(np.int64), 8)):
        key = key * width + part
    return key


def score(df: pd.DataFrame, bundle) -> tuple[np.ndarray, np.ndarray]:
    """Score rows with one model bundle: returns ``(P(delayed), predicted delay minutes)``.

    The models are deterministic functions of the features, and 3M flights have only ~216k distinct
    feature vectors (scheduled routes repeat), so each distinct vector is scored once and the
    result broadcast back: identical output, ~14x less tree traversal.
    """
    design, clf, reg, vocab = bundle
    _, first, inverse = np.unique(_feature_key(df, vocab), return_index=True, return_inverse=True)
    x = design(df.iloc[first], vocab)
    p, minutes = clf.predict_proba(x)[:, 1].astype(np.float64), reg.predict(x).astype(np.float64)
    return p[inverse], minutes[inverse]


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def _utc(naive: np.ndarray) -> pa.Array:
    return pa.array(naive.astype("datetime64[us]").astype(np.int64), pa.int64()).view(pa.timestamp("us", tz="UTC"))


def _lookup(labels, codes: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(labels, dtype=object)[codes], pa.string())


def build_predictions(df: pd.DataFrame, scores: dict) -> pa.Table:
    """Interleave the per-model outputs into one serving-log table (flight order, champion first)."""
    n, m = len(df), len(MODELS)
    take = np.repeat(np.arange(n), m)  # flight of each output row
    model_idx = np.tile(np.arange(m), n)
    score_all = np.column_stack([scores[k][0] for k in MODELS]).ravel()
    minutes_all = np.column_stack([scores[k][1] for k in MODELS]).ravel()
    ids = pa.array(df["row"].to_numpy().astype(str), pa.string()).take(pa.array(take))
    cols = {
        "prediction_id": ids,
        "timestamp": _utc(df["date"].to_numpy()).take(pa.array(take)),
        "model": _lookup(MODELS, model_idx),
        "predicted_delayed": pa.array((score_all >= DECISION_THRESHOLD).astype(np.int8)),
        "score": pa.array(score_all),
        "predicted_delay": pa.array(minutes_all),
        "origin": pa.array(df["origin"].to_numpy(), pa.string()).take(pa.array(take)),
        "destination": pa.array(df["destination"].to_numpy(), pa.string()).take(pa.array(take)),
        "origin_state": pa.array(df["origin_state"].to_numpy(), pa.string()).take(pa.array(take)),
        "distance": pa.array(df["distance"].to_numpy()[take], pa.int64()),
        "distance_band": _lookup(DISTANCE_BANDS, df["band"].to_numpy()[take]),
        "hour": pa.array(df["hour"].to_numpy()[take], pa.int8()),
        "hour_band": _lookup(HOUR_BANDS, df["hour_band_i"].to_numpy()[take]),
        "day_of_week": _lookup(DAY_NAMES, df["dow"].to_numpy()[take]),
    }
    return pa.table(cols, schema=PREDICTION_SCHEMA)


def simulate_labels(df: pd.DataFrame, as_of: pd.Timestamp, seed: int, n_source: int) -> tuple[pa.Table, dict]:
    """Simulate late-arriving ground truth for the flights in ``df``.

    Per flight (all draws are made for every *source* row and then indexed, so a flight gets the
    same label story at any ``--sample-frac``):

    - the label arrives at departure + U(2 h, 72 h), truncated to whole seconds;
    - with probability 1 % it never arrives (missing);
    - with probability 0.2 % a second row arrives 1-48 h after the first. For 80 % of those the
      value is repeated (a re-delivery); for 20 % the *first* row was a wrong preliminary value
      (true delay +/- 20-60 min) and the later row is the corrected truth ("latest wins");
    - rows whose ``label_timestamp`` is after ``as_of`` (the last scheduled departure in the
      source) have not arrived yet and are dropped.

    Returns the label table sorted by ``label_timestamp`` and a dict of policy counts.
    """
    rng = np.random.default_rng([seed, 3])
    lag = rng.uniform(LABEL_LAG_MIN_H, LABEL_LAG_MAX_H, n_source)
    missing = rng.random(n_source) < P_MISSING
    duplicate = rng.random(n_source) < P_DUPLICATE
    corrected = rng.random(n_source) < P_CORRECTED
    correction_lag = rng.uniform(CORRECTION_LAG_MIN_H, CORRECTION_LAG_MAX_H, n_source)
    shift = rng.uniform(20, 60, n_source) * rng.choice([-1.0, 1.0], n_source)

    rows = df["row"].to_numpy()
    dep = df["date"].to_numpy().astype("datetime64[us]").astype(np.int64)
    true_delay = df["delay"].to_numpy().astype(np.float64)
    as_of_us = np.datetime64(as_of.to_datetime64(), "us").astype(np.int64)

    first_ts = dep + (lag[rows] * 3600).astype(np.int64) * US
    missing, duplicate = missing[rows], duplicate[rows] & ~missing[rows]
    corrected = duplicate & corrected[rows]
    first_value = np.where(corrected, np.round(true_delay + shift[rows]), true_delay)
    second_ts = first_ts + (correction_lag[rows] * 3600).astype(np.int64) * US

    keep1 = ~missing & (first_ts <= as_of_us)
    keep2 = duplicate & keep1 & (second_ts <= as_of_us)
    idx1, idx2 = np.flatnonzero(keep1), np.flatnonzero(keep2)
    ids = np.concatenate([rows[idx1], rows[idx2]]).astype(str)
    minutes = np.concatenate([first_value[idx1], true_delay[idx2]])
    ts = np.concatenate([first_ts[idx1], second_ts[idx2]])
    order = np.lexsort((ids, ts))
    table = pa.table({
        "prediction_id": pa.array(ids[order], pa.string()),
        "delayed": pa.array((minutes[order] > DELAY_THRESHOLD_MIN).astype(np.int8)),
        "delay_minutes": pa.array(minutes[order]),
        "label_timestamp": pa.array(ts[order], pa.int64()).view(pa.timestamp("us", tz="UTC")),
    }, schema=LABEL_SCHEMA)
    counts = {
        "flights": int(len(df)),
        "labelled_flights": int(keep1.sum()),
        "missing_flights": int(missing.sum()),
        "not_yet_arrived_flights": int((~missing & ~keep1).sum()),
        "duplicate_flights": int(keep2.sum()),
        "corrected_flights": int((keep2 & corrected).sum()),
        "corrected_flag_flips": int((keep2 & corrected & ((first_value > DELAY_THRESHOLD_MIN)
                                                          != (true_delay > DELAY_THRESHOLD_MIN))).sum()),
        "label_rows": int(table.num_rows),
    }
    return table, counts


def write_partitioned(table: pa.Table, ts_column: str, root: Path, workers: int = 4) -> list[str]:
    """Write ``table`` (sorted by ``ts_column``) as ``root/date=YYYY-MM-DD/part-0.parquet``, one file per day."""
    ts = table[ts_column].combine_chunks().view(pa.int64()).to_numpy()
    day = (ts // (86400 * US)).astype(np.int64)
    if len(day) and np.any(np.diff(day) < 0):
        raise ValueError(f"table must be sorted by {ts_column}")
    starts = np.flatnonzero(np.r_[True, np.diff(day) != 0]) if len(day) else np.array([], dtype=np.int64)
    bounds = list(zip(starts, np.r_[starts[1:], len(day)]))

    def one(b):
        lo, hi = int(b[0]), int(b[1])
        name = str(np.datetime64(int(day[lo]), "D"))
        part = root / f"date={name}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(lo, hi - lo), part / "part-0.parquet", compression="zstd")
        return f"date={name}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, bounds))


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None


# --------------------------------------------------------------------------------------------
# Idempotent, atomic driver
# --------------------------------------------------------------------------------------------

def _complete(out: Path, params: dict) -> dict | None:
    """The marker of a complete dataset built with ``params`` in ``out``, else None."""
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("params") != params:
        return None
    for key in ("predictions", "labels"):
        if len(list((out / key).glob("date=*/*.parquet"))) != marker["files"][key]:
            return None
    return marker


def _clean_stale_temp_dirs(out: Path) -> None:
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)  # signal 0: existence check only
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


def _result(out: Path, marker: dict, skipped: bool) -> dict:
    return {
        "out_dir": str(out), "predictions_dir": str(out / "predictions"), "labels_dir": str(out / "labels"),
        "marker": str(out / MARKER), "skipped": skipped, **{k: marker[k] for k in ("params", "rows", "files", "labels", "models", "eval", "seconds")},
    }


def prepare(out_dir, sample_frac: float = 1.0, seed: int = 0, data_dir=None) -> dict:
    """Build (or reuse) the flights example dataset in ``out_dir``.

    Trains both model bundles on January 2001, scores every (sampled) flight with both, simulates
    late-arriving labels and writes ``out_dir/predictions`` and ``out_dir/labels`` as
    hive-partitioned Parquet plus the ``_PREPARED.json`` marker.

    Idempotent: if ``out_dir`` already holds a complete dataset for the same ``sample_frac``,
    ``seed`` and source data checksums, nothing is rewritten (``result["skipped"]`` is True).
    Atomic: the dataset is assembled in a hidden temp directory next to ``out_dir`` and renamed
    into place; a dataset of ours built with other parameters is replaced the same way. A
    non-empty ``out_dir`` without a marker is refused rather than overwritten.

    Returns a dict with ``out_dir``, ``predictions_dir``, ``labels_dir``, ``marker``, ``skipped``,
    ``params``, ``rows`` (flights, predictions, labels), ``files``, ``labels`` (policy counts),
    ``models`` (model cards), ``eval`` (Feb-Jun AUC per model) and ``seconds`` (stage timings).
    """
    if not 0.0 < sample_frac <= 1.0:
        raise ValueError(f"sample_frac must be in (0, 1], got {sample_frac}")
    out = Path(out_dir).resolve()
    data = Path(data_dir).resolve() if data_dir is not None else DEFAULT_DATA_DIR
    for f in (FLIGHTS_FILE, AIRPORTS_FILE):
        if not (data / f).is_file():
            raise FileNotFoundError(f"source data missing: {data / f}")
    params = {
        "format": FORMAT_VERSION, "sample_frac": float(sample_frac), "seed": int(seed),
        "sha256": {f: _sha256(data / f) for f in (FLIGHTS_FILE, AIRPORTS_FILE)},
    }
    marker = _complete(out, params)
    if marker is not None:
        _log(f"{out} already holds a complete dataset for these parameters; skipping")
        return _result(out, marker, skipped=True)
    replacing = out.exists() and any(out.iterdir())
    if replacing and not (out / MARKER).is_file():
        raise FileExistsError(f"{out} is not empty and holds no {MARKER}; refusing to overwrite it")

    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temp_dirs(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    seconds, t_all = {}, time.perf_counter()
    try:
        t0 = time.perf_counter()
        n_source = pq.ParquetFile(data / FLIGHTS_FILE).metadata.num_rows
        df, as_of = load_flights(data, sample_frac, seed)
        seconds["load"] = time.perf_counter() - t0
        _log(f"loaded {len(df):,} of {n_source:,} flights ({seconds['load']:.1f}s)")

        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        with threadpool_limits(limits=OMP_THREADS, user_api="openmp"):
            t0 = time.perf_counter()
            bundles, model_info = train_models(df, seed)
            seconds["train"] = time.perf_counter() - t0
            _log(f"trained {', '.join(MODELS)} ({seconds['train']:.1f}s)")

            t0 = time.perf_counter()
            scores = {name: score(df, bundle) for name, bundle in bundles.items()}
            seconds["score"] = time.perf_counter() - t0
        _log(f"scored {len(df):,} flights x {len(MODELS)} models ({seconds['score']:.1f}s)")

        test = (df["date"] >= TRAIN_END).to_numpy()
        y = df["delayed"].to_numpy()
        evaluation = {name: {"auc_feb_jun": _auc(y[test], s[test]), "auc_jan": _auc(y[~test], s[~test]),
                             "mae_minutes_feb_jun": float(np.mean(np.abs(m[test] - df["delay"].to_numpy()[test])))
                             if test.any() else None}
                      for name, (s, m) in scores.items()}
        evaluation["delayed_rate_feb_jun"] = float(y[test].mean()) if test.any() else None

        t0 = time.perf_counter()
        predictions = build_predictions(df, scores)
        labels, label_counts = simulate_labels(df, as_of, seed, n_source)
        pred_parts = write_partitioned(predictions, "timestamp", tmp / "predictions")
        label_parts = write_partitioned(labels, "label_timestamp", tmp / "labels")
        seconds["write"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - t_all
        seconds = {k: round(v, 2) for k, v in seconds.items()}
        _log(f"wrote {predictions.num_rows:,} predictions in {len(pred_parts)} files and "
             f"{labels.num_rows:,} labels in {len(label_parts)} files ({seconds['write']:.1f}s)")

        marker = {
            "params": params,
            "as_of": as_of.tz_localize("UTC").isoformat(),
            "rows": {"flights": int(len(df)), "predictions": int(predictions.num_rows), "labels": int(labels.num_rows)},
            "files": {"predictions": len(pred_parts), "labels": len(label_parts)},
            "labels": label_counts,
            "models": model_info,
            "eval": evaluation,
            "seconds": seconds,
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")

        if replacing:  # our own dataset with other parameters: swap it out
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()  # empty
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _log(f"done in {seconds['total']:.1f}s -> {out}")
    return _result(out, marker, skipped=False)


def summary(result: dict) -> str:
    """A few readable lines about a prepared dataset (the whole record: ``--json`` or the
    ``_PREPARED.json`` marker)."""
    rows, files, lab, ev = result["rows"], result["files"], result["labels"], result["eval"]
    flights = max(lab["flights"], 1)
    lines = [
        f"{'reused' if result['skipped'] else 'prepared'} {result['out_dir']}: "
        f"{rows['flights']:,} flights -> {rows['predictions']:,} prediction rows "
        f"({files['predictions']} daily files), {rows['labels']:,} label rows ({files['labels']} files)",
        f"labels: {lab['missing_flights'] / flights:.1%} never arrive, "
        f"{lab['not_yet_arrived_flights'] / flights:.1%} not yet arrived, {lab['duplicate_flights']:,} "
        f"delivered twice ({lab['corrected_flights']:,} corrected)",
    ]
    for name, card in result["models"].items():
        e = ev.get(name, {})
        auc, mae = e.get("auc_feb_jun"), e.get("mae_minutes_feb_jun")
        lines.append(f"model {name}: {card['classifier']} + {card['regressor']}, trained on "
                     f"{card['train_rows']:,} January flights in {card['train_seconds']:.1f}s; "
                     f"Feb-Jun ROC AUC {auc:.3f}, MAE {mae:.1f} min" if auc is not None and mae is not None
                     else f"model {name}: {card['classifier']} + {card['regressor']}")
    sec = result["seconds"]
    lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items())
                 + f" (details: {result['marker']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Command-line entry point; prints a short summary (``--json``: the result dict)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (e.g. examples/flights/bucket)")
    ap.add_argument("--sample-frac", type=float, default=1.0, help="fraction of flights to keep (default 1.0)")
    ap.add_argument("--seed", type=int, default=0, help="seed for sampling, training and label simulation")
    ap.add_argument("--data-dir", default=None, help=f"source data directory (default {DEFAULT_DATA_DIR})")
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = ap.parse_args(argv)
    result = prepare(args.out, sample_frac=args.sample_frac, seed=args.seed, data_dir=args.data_dir)
    print(json.dumps(result, indent=2) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
