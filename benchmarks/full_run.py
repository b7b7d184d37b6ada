"""A full default run on a clean clone, timed, and recorded in results/benchmarks/full_runs.csv.

    python benchmarks/full_run.py --what "the default" [--mirror ../shared/data] [--workdir DIR] [--copy]

Clones this checkout's HEAD (committed work only) into --workdir (a new folder, or one this script made before),
runs `make setup` there, then times `snakemake --cores all` with the mirror, as a new user would. On success it
appends a row to this checkout's results/benchmarks/full_runs.csv: run id (commit@start), commit, what, machine
(cores and processor, AVX-512 said, from the run's provenance), wall minutes, how it was measured (UTC start and
end), cores, job-minutes and CPU-minutes (the run's benchmark files' wall and CPU seconds summed; every one must be
written by this run), and the SHA-256 of each of its prediction files to results/benchmarks/full_runs_predictions.csv
-- the table docs/performance.md and docs/tuning.md generate (`python -m cryptomed docs` regenerates it). --copy
then copies the tracked files the run changed into this checkout (refused before the run if this checkout has
uncommitted changes under results/). A failed setup or run exits non-zero with its log's last lines and records
nothing. Nothing else should run on the machine meanwhile: the wall time is the measurement.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from cryptomed.docs import FULL_RUN_DIGESTS, cpu_kind, prediction_digests  # noqa: E402
from pipeline import rule_times  # noqa: E402

COLUMNS = ["run", "commit", "what", "machine", "wall_minutes", "measured", "cores", "job_minutes", "cpu_minutes"]
DIGEST_COLUMNS = ["run", "file", "sha256"]
MARKER = ".cryptomed-full-run"  # in a --workdir this script made: only such a folder is ever deleted


def machine(results: Path, cores: int) -> str:
    """'<cores>-core <processor> with|without AVX-512', from the proposed CNN's provenance in a run's metrics."""
    found = sorted(results.glob("*/metrics/aes_cnn.json"))
    if not found:
        raise SystemExit(f"{results}: no */metrics/aes_cnn.json to read the machine from (did the run finish?)")
    return f"{cores}-core {cpu_kind(json.loads(found[0].read_text())['provenance'])}"


def run_row(results: Path, commit: str, what: str, start: dt.datetime, end: dt.datetime, cores: int) -> dict:
    """The full_runs.csv row of a finished run whose outputs are under ``results``: every benchmark and prediction
    file there must have been written after ``start`` (a job the run did not redo would count old numbers)."""
    if end <= start:
        raise ValueError(f"the run ended ({end:%H:%M:%S}) before it started ({start:%H:%M:%S})")
    wall = (end - start).total_seconds() / 60
    jobs = rule_times(results)
    old = [p for p in [*jobs["path"], *results.glob("*/predictions/*.csv")] if p.stat().st_mtime < start.timestamp()]
    if old:
        raise ValueError(f"{len(old)} benchmark or prediction files were not written by this run, first: {old[0]}")
    jobs, cpu = jobs["seconds"].sum() / 60, jobs["cpu_seconds"].sum() / 60
    if jobs > cores * wall * 1.001:
        raise ValueError(f"{jobs:.1f} job-minutes cannot fit {cores} cores for {wall:.1f} minutes: the benchmark "
                         f"files under {results} are not all from this run")
    return {"run": f"{commit}@{start:%Y-%m-%dT%H:%M:%SZ}", "commit": commit, "what": what,
            "machine": machine(results, cores), "wall_minutes": round(wall, 2),
            "measured": f"time snakemake --cores all on a clean clone, {start:%H:%M:%S} to {end:%H:%M:%S} UTC, "
                        f"{start:%Y-%m-%d}", "cores": cores, "job_minutes": round(jobs, 2),
            "cpu_minutes": round(cpu, 2)}


def _appended(csv: Path, rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """The CSV (empty if absent) with ``rows`` appended; refused if a column is missing or a run is there already."""
    frame = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=columns)
    missing = set(columns) - set(frame.columns)
    if missing:
        raise SystemExit(f"{csv}: columns {sorted(missing)} missing")
    if set(frame["run"].astype(str)) & {r["run"] for r in rows}:
        raise SystemExit(f"{csv}: run {rows[0]['run']} is recorded already")
    frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
    if "cores" in frame:
        frame["cores"] = frame["cores"].astype("Int64")
    return frame


def record(results: Path, row: dict, into: Path) -> None:
    """The run's row into ``into``/benchmarks/full_runs.csv and its prediction files' digests into
    ``into``/benchmarks/full_runs_predictions.csv: both checked and written to temporary files first, then put in
    place together (a failure before that leaves both files as they were)."""
    digests = [{"run": row["run"], "file": f, "sha256": h} for f, h in prediction_digests(results).items()]
    targets = {into / "benchmarks" / "full_runs.csv": _appended(into / "benchmarks" / "full_runs.csv", [row], COLUMNS),
               into / FULL_RUN_DIGESTS: _appended(into / FULL_RUN_DIGESTS, digests, DIGEST_COLUMNS)}
    tmps = {csv: csv.with_suffix(".csv.tmp") for csv in targets}
    try:
        for csv, frame in targets.items():
            frame.to_csv(tmps[csv], index=False)
    except BaseException:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise
    for csv, tmp in tmps.items():
        tmp.replace(csv)


def _step(cmd: list[str], cwd: Path, log: Path, env=None) -> None:
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}); last lines of {log}:\n{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", required=True, help="the configuration, in words (the table's second column)")
    ap.add_argument("--mirror", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cryptomed-full-run"))
    ap.add_argument("--copy", action="store_true", help="copy the files the run changed into this checkout")
    args = ap.parse_args(argv)
    if not (args.mirror / "README.md").exists() and not any(args.mirror.glob("*/manifest.csv")):
        raise SystemExit(f"--mirror {args.mirror}: not a data mirror (no README.md or */manifest.csv)")
    work = args.workdir.resolve()
    if work == REPO.resolve() or work in REPO.resolve().parents:
        raise SystemExit(f"--workdir {args.workdir}: this checkout or a folder holding it")
    if work.exists() and any(work.iterdir()) and not (work / MARKER).is_file():
        raise SystemExit(f"--workdir {args.workdir}: not empty and not made by this script (no {MARKER}): not deleted")
    if args.copy and subprocess.run(["git", "status", "--porcelain", "--", "results"], cwd=REPO, capture_output=True,
                                    text=True, check=True).stdout.strip():
        raise SystemExit("--copy: results/ has uncommitted changes here; commit or discard them first")
    commit = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    if work.exists():
        shutil.rmtree(work)
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    (work / MARKER).write_text("made by benchmarks/full_run.py; deleted by its next run\n")
    args.workdir = work
    args.workdir.joinpath("logs").mkdir(exist_ok=True)
    print(f"setup of {commit} in {args.workdir} ...", flush=True)
    _step(["make", "setup"], args.workdir, args.workdir / "logs" / "full_run_setup.log")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # as --cores all
    env = {**os.environ, "DATA_MIRROR": str(args.mirror.resolve())}
    print(f"snakemake --cores all on {cores} cores ...", flush=True)
    start = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    _step([str(args.workdir / ".venv/bin/snakemake"), "--cores", "all"], args.workdir,
          args.workdir / "logs" / "full_run.log", env=env)
    end = start + dt.timedelta(seconds=time.perf_counter() - t0)
    row = run_row(args.workdir / "results", commit, args.what, start, end, cores)
    changed = subprocess.run(["git", "diff", "--name-only"], cwd=args.workdir, capture_output=True, text=True,
                             check=True).stdout.split()
    gone = [p for p in changed if not (args.workdir / p).exists()]
    if args.copy and gone:
        raise SystemExit(f"the run deleted {len(gone)} tracked files (first: {gone[0]}): nothing recorded or copied")
    record(args.workdir / "results", row, REPO / "results")
    print(f"{row['wall_minutes']} min wall, {row['job_minutes']} job-minutes, {row['cpu_minutes']} CPU-minutes on "
          f"{row['machine']}: a row appended to results/benchmarks/full_runs.csv")
    for path in changed if args.copy else []:
        shutil.copy2(args.workdir / path, REPO / path)
    print(f"{len(changed)} tracked files changed by the run" + (", copied into this checkout" if args.copy else
                                                                 f" (in {args.workdir}; --copy copies them)")
          + "; regenerate the docs: python -m cryptomed docs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
