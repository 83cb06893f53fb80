"""In-process (no Ray) cost of intervals + comparison on a prepared flights sample:
``python benchmarks/_stats_inproc.py <sample dir name under /tmp/stats-fl> <windows.end>``
(run from the repository root). Prints CPU seconds of accumulate and finalize with and
without the statistics, the blessing and a few overall values."""
import sys, time
sys.path.insert(0, '.')
import pyarrow.dataset as ds, pyarrow as pa, pandas as pd
from rayeval.config import load_config
from rayeval.engine.labels import LabelIndex
from rayeval.engine.pairing import build_pair_indexes
from rayeval.engine.plan import EvalPlan, _timestamps
from rayeval.engine.results import finalize
from rayeval.engine.gates import evaluate_gates, check_gates
from rayeval.engine.blessing import blessing_record
from rayeval.slicing import window_starts
frac = sys.argv[1]; end = sys.argv[2]
cfg = load_config("./configs/flights.yaml", [f"inputs.predictions.uri=/tmp/stats-fl/{frac}/predictions", f"inputs.labels.uri=/tmp/stats-fl/{frac}/labels", f"windows.end={end}", "drift.enabled=false"])
check_gates(cfg)
t0 = time.process_time()
pred = ds.dataset(f"/tmp/stats-fl/{frac}/predictions", partitioning="hive").to_table()
pred = pred.filter((pa.compute.field("timestamp") >= pd.Timestamp("2001-02-05", tz="UTC")) & (pa.compute.field("timestamp") < pd.Timestamp(end, tz="UTC")))
lab = ds.dataset(f"/tmp/stats-fl/{frac}/labels", partitioning="hive").to_table()
index = LabelIndex.build(lab, "prediction_id", "label_timestamp")
pairs = build_pair_indexes(cfg, pred, lambda t: window_starts(_timestamps(t, "timestamp"), "week"))
print("rows", pred.num_rows, "read", time.process_time() - t0)
for intervals in (False, True):
    c = cfg if intervals else load_config("./configs/flights.yaml", [f"windows.end={end}", "drift.enabled=false", "intervals.enabled=false", "comparisons.pairs=[]", "gates=[]"])
    plan = EvalPlan(c, index, None, pairs if intervals else None)
    t = time.process_time()
    part = plan.zero()
    for b in pred.to_batches(max_chunksize=100_000):
        part = plan.merge(part, plan.batch_partial(pa.Table.from_batches([b])))
    t1 = time.process_time()
    fin = finalize(plan, part, "r")
    t2 = time.process_time()
    print("intervals", intervals, "accumulate", round(t1 - t, 1), "finalize", round(t2 - t1, 1), "metrics", len(fin.metrics), "comparisons", len(fin.comparisons))
g = evaluate_gates(cfg, fin.metrics, None, "r", fin.comparisons)
rec = blessing_record(cfg, "r", g, {})
print(rec["status"], rec["n_failed"], "/", rec["n_checks"])
for r in rec["failing_rules"]:
    print(r["rule"], r["n_failed"], r["worst"][:3])
m = fin.metrics
print(m[(m.slice == "overall") & m.metric.isin(["roc_auc", "f1", "rmse", "accuracy"]) & (m.average.isna() | (m.average == "binary")) & m.class_label.isna()][["model", "window_start", "metric", "value", "ci_lower", "ci_upper", "ci_method"]].to_string())
c = fin.comparisons
print(c[(c.slice == "overall") & c.metric.isin(["roc_auc", "accuracy", "rmse"])][["window_start", "metric", "difference", "ci_lower", "ci_upper", "p_value", "p_adjusted", "test", "n_paired", "n_unpaired"]].to_string())
print(m.ci_flag.value_counts().to_dict(), m.ci_method.value_counts().to_dict())
