"""Run inside the Airflow test environment (``.venv-airflow``, see ``test_airflow.py``), never
imported by the project: loads ``deploy/airflow`` in a DagBag and runs ``dag.test()`` for one
logical date with the run conf given as JSON; prints one JSON line ``RESULT {...}`` with the
import errors, the DAG's schedule and the run's final state."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone


def main() -> None:
    dag_folder, logical_date, conf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dag_folder)
    out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()},
           "dag_ids": sorted(bag.dag_ids)}
    dag = bag.get_dag("rayeval_scheduled")
    if dag is not None:
        out["schedule"] = str(getattr(dag, "schedule", None) or dag.timetable)
        out["tasks"] = [t.task_id for t in dag.tasks]
        if logical_date != "-":
            when = datetime.fromisoformat(logical_date).replace(tzinfo=timezone.utc)
            run = dag.test(logical_date=when, run_conf=conf)
            out["state"] = str(run.state)
            out["task_states"] = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
