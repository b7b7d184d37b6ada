"""`python -m snakemake`, with the Slurm executor's status checks at most 2 s apart (tests/test_slurm.py).

The Slurm executor plugin waits 10 s longer before each status check while no job has ended (hard-coded, up to
three minutes); with the test's jobs of a few seconds on a one-node cluster, that waiting was most of the test's
time. The test is about where the jobs run (each one a Slurm job, the GPU-tagged rule with a GPU), not about the
plugin's polling, so here the wait is capped; everything else is Snakemake's own command line.
"""

from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

CAP_S = 2
_wait = RemoteExecutor.next_seconds_between_status_checks
RemoteExecutor.next_seconds_between_status_checks = property(_wait.fget, lambda self, s: _wait.fset(self, min(s, CAP_S)))

if __name__ == "__main__":
    from snakemake.cli import main

    main()
