"""Print the jobs of the Snakemake DAG (rule, outputs, inputs, threads, priority) as JSON, built from the rules, not
from metadata, for a run with --cores 2.

Run as a script in the workflow directory (tests/test_dvc.py): ``python tests/snakemake_jobs.py``.
"""

import json
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import DAGSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=2), snakefile=Path("Snakefile"), workdir=Path("."))
    workflow = wf.dag(DAGSettings(forceall=True)).workflow_api._workflow
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    workflow._build_dag()
    print(json.dumps([{"rule": j.rule.name, "output": list(map(str, j.output)), "input": list(map(str, j.input)),
                       "threads": j.threads, "priority": j.rule.expand_priority(j.wildcards_dict, j.input, 1)}
                      for j in workflow.dag.jobs]))
