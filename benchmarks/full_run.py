"""A full default run on a clean clone, timed, and recorded in results/benchmarks/full_runs.csv.

    python benchmarks/full_run.py --what "the default" [--mirror ../shared/data] [--workdir DIR] [--copy]

Clones this checkout's HEAD (committed work only) into --workdir, runs `make setup` there, then times
`snakemake --cores all` with the mirror, as a new user would. On success it appends a row to this checkout's
results/benchmarks/full_runs.csv: commit, what, machine (cores and processor, AVX-512 said, from the run's
provenance), wall minutes, how it was measured (UTC start and end), cores, job-minutes and CPU-minutes (the clone's
benchmark files' wall and CPU seconds summed), and the SHA-256 of each of its prediction files to
results/benchmarks/full_runs_predictions.csv -- the table docs/performance.md and docs/tuning.md generate. It lists
the tracked files the run changed; --copy copies them into this checkout (results/ then come from that run). A failed setup or
run exits non-zero with its log's last lines and records nothing. Nothing else should run on the machine meanwhile:
the wall time is the measurement.
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

from cryptomed.docs import FULL_RUN_DIGESTS, prediction_digests  # noqa: E402

COLUMNS = ["commit", "what", "machine", "wall_minutes", "measured", "cores", "job_minutes", "cpu_minutes"]


def machine(results: Path, cores: int) -> str:
    """'<cores>-core <processor> with|without AVX-512', from the proposed CNN's provenance in a run's metrics."""
    from cryptomed.docs import _cpu_kind

    found = sorted(results.glob("*/metrics/aes_cnn.json"))
    if not found:
        raise SystemExit(f"{results}: no */metrics/aes_cnn.json to read the machine from (did the run finish?)")
    return f"{cores}-core {_cpu_kind(json.loads(found[0].read_text())['provenance'])}"


def run_row(results: Path, commit: str, what: str, start: dt.datetime, end: dt.datetime, cores: int) -> dict:
    """The full_runs.csv row of a finished run whose outputs are under ``results``."""
    if end <= start:
        raise ValueError(f"the run ended ({end:%H:%M:%S}) before it started ({start:%H:%M:%S})")
    wall = (end - start).total_seconds() / 60
    tsvs = sorted((results / "benchmarks").rglob("*.tsv"))
    if not tsvs:
        raise ValueError(f"no benchmark files under {results / 'benchmarks'}")
    frames = [pd.read_csv(t, sep="\t") for t in tsvs]
    jobs, cpu = (sum(float(f[col].sum()) for f in frames) / 60 for col in ("s", "cpu_time"))
    if jobs > cores * wall * 1.001:
        raise ValueError(f"{jobs:.1f} job-minutes cannot fit {cores} cores for {wall:.1f} minutes: the benchmark "
                         f"files under {results} are not all from this run")
    return {"commit": commit, "what": what, "machine": machine(results, cores), "wall_minutes": round(wall, 2),
            "measured": f"time snakemake --cores all on a clean clone, {start:%H:%M:%S} to {end:%H:%M:%S} UTC, "
                        f"{start:%Y-%m-%d}", "cores": cores, "job_minutes": round(jobs, 2),
            "cpu_minutes": round(cpu, 2)}


def append_rows(csv: Path, rows: list[dict], columns: list[str]) -> None:
    """Append ``rows`` to a CSV (created if absent), written whole to a temporary file first."""
    frame = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=columns)
    missing = set(columns) - set(frame.columns) - {"cores", "job_minutes", "cpu_minutes"}
    if missing:
        raise SystemExit(f"{csv}: columns {sorted(missing)} missing")
    frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
    if "cores" in frame:
        frame["cores"] = frame["cores"].astype("Int64")
    tmp = csv.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(csv)


def record(results: Path, row: dict, into: Path) -> None:
    """The run's row into ``into``/benchmarks/full_runs.csv and its prediction files' digests beside it."""
    digests = [{"commit": row["commit"], "machine": row["machine"], "file": f, "sha256": h}
               for f, h in prediction_digests(results).items()]
    append_rows(into / FULL_RUN_DIGESTS, digests, ["commit", "machine", "file", "sha256"])
    append_rows(into / "benchmarks" / "full_runs.csv", [row], COLUMNS)


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
    commit = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    subprocess.run(["git", "clone", "-q", str(REPO), str(args.workdir)], check=True)
    args.workdir.joinpath("logs").mkdir(exist_ok=True)
    print(f"setup of {commit} in {args.workdir} ...", flush=True)
    _step(["make", "setup"], args.workdir, args.workdir / "logs" / "full_run_setup.log")
    cores = os.cpu_count() or 1
    env = {**os.environ, "DATA_MIRROR": str(args.mirror.resolve())}
    print(f"snakemake --cores all on {cores} cores ...", flush=True)
    start = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    _step([str(args.workdir / ".venv/bin/snakemake"), "--cores", "all"], args.workdir,
          args.workdir / "logs" / "full_run.log", env=env)
    end = start + dt.timedelta(seconds=time.perf_counter() - t0)
    row = run_row(args.workdir / "results", commit, args.what, start, end, cores)
    record(args.workdir / "results", row, REPO / "results")
    print(f"{row['wall_minutes']} min wall, {row['job_minutes']} job-minutes, {row['cpu_minutes']} CPU-minutes on "
          f"{row['machine']}: a row appended to results/benchmarks/full_runs.csv")
    changed = subprocess.run(["git", "diff", "--name-only"], cwd=args.workdir, capture_output=True, text=True,
                             check=True).stdout.split()
    for path in changed:
        if args.copy:
            shutil.copy2(args.workdir / path, REPO / path)
    print(f"{len(changed)} tracked files changed by the run" + (", copied into this checkout" if args.copy else
                                                                 f" (in {args.workdir}; --copy copies them)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
