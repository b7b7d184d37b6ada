"""Print the jobs of the Snakemake DAG (rule, outputs, inputs, threads, priority) as JSON, built from the rules, not
from metadata, for a run with --cores 2; an optional JSON argument overrides config keys.

Run as a script in the workflow directory (tests/test_dvc.py, tests/test_schedule.py):
``python tests/snakemake_jobs.py ['{"threads_per_job": 2}']``.
"""

import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

CORES = 2
overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}

with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=CORES), config_settings=ConfigSettings(config=overrides),
                      snakefile=Path("Snakefile"), workdir=Path("."))
    workflow = wf.dag(DAGSettings(forceall=True)).workflow_api._workflow
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    workflow._build_dag()
    workflow.dag.update_priority()  # the priorities the scheduler reads
    print(json.dumps([{"rule": j.rule.name, "output": list(map(str, j.output)), "input": list(map(str, j.input)),
                       "threads": j.threads, "priority": j.priority}
                      for j in workflow.dag.jobs]))
