"""benchmarks/full_run.py: the row a timed full run appends to results/benchmarks/full_runs.csv."""

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cryptomed import docs

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "full_run.py"
spec = importlib.util.spec_from_file_location("full_run", SCRIPT)
full_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(full_run)

START = dt.datetime(2026, 11, 28, 9, 50, 19, tzinfo=dt.timezone.utc)


def fake_run(results: Path, seconds: dict, flags=("avx2", "avx512f")) -> None:
    for job, s in seconds.items():
        path = results / "benchmarks" / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{s}\t0:00:00\t1.0\t{s / 2}\n")
    metrics = results / "chest_xray" / "metrics" / "aes_cnn.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"provenance": {"cpu": {"model_name": "AMD EPYC", "flags": list(flags)}}}))
    for method in ("aes_cnn", "he_linear"):
        (results / "chest_xray" / "predictions").mkdir(exist_ok=True)
        (results / "chest_xray" / "predictions" / f"{method}.csv").write_text(f"id,p\n1,{method}\n")


def test_the_row_sums_the_runs_benchmarks_and_names_the_processor(tmp_path):
    fake_run(tmp_path / "results", {"train/chest_xray_aes_cnn": 1200.0, "preprocess/chest_xray": 60.0,
                                    "convert_efficientnet": 6.0})
    row = full_run.run_row(tmp_path / "results", "abc1234", "the default", START,
                           START + dt.timedelta(minutes=11, seconds=6), cores=2)
    assert row == {"run": "abc1234@2026-11-28T09:50:19Z", "commit": "abc1234", "what": "the default",
                   "machine": "2-core AMD EPYC with AVX-512",
                   "wall_minutes": 11.1, "measured": "time snakemake --cores all on a clean clone, 09:50:19 to "
                   "10:01:25 UTC, 2026-11-28", "cores": 2, "job_minutes": 21.1, "cpu_minutes": 10.55}
    results = tmp_path / "results"
    full_run.record(results, row, results)
    (results / "chest_xray" / "predictions" / "he_linear.csv").write_text("id,p\n1,fresh noise\n")  # a later run
    again = {**row, "run": "abc1234@2026-11-28T10:10:00Z", "what": "the default again"}  # the same commit re-timed
    full_run.record(results, again, results)
    assert list(pd.read_csv(results / "benchmarks" / "full_runs.csv")["what"]) == ["the default", "the default again"]
    assert len(pd.read_csv(results / docs.FULL_RUN_DIGESTS)) == 4
    table = docs.full_runs(docs.Results(results))  # the generated table reads both
    assert ("| `abc1234` | the default | 2-core AMD EPYC with AVX-512 | 11.1 | 21.1 (95%) | 10.6 (48%) | 1 of 2 |"
            in table), table
    assert "| 11.1 | 21.1 (95%) | 10.6 (48%) | 2 of 2 |" in table.split("the default again")[1]
    before = {p.name: p.read_bytes() for p in (results / "benchmarks").glob("*.csv")}
    with pytest.raises(SystemExit, match="recorded already"):  # nothing half-written: both files as they were
        full_run.record(results, again, results)
    assert {p.name: p.read_bytes() for p in (results / "benchmarks").glob("*.csv*")} == before


def test_benchmarks_from_another_run_or_a_clock_gone_backwards_are_refused(tmp_path):
    fake_run(tmp_path / "results", {"train/a": 1300.0, "train/b": 1300.0}, flags=("avx2",))
    with pytest.raises(ValueError, match="4 benchmark or prediction files were not written by this run"):
        full_run.run_row(tmp_path / "results", "abc1234", "x", dt.datetime.now(dt.timezone.utc) + dt.timedelta(
            hours=1), dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2), cores=2)
    with pytest.raises(ValueError, match="43.3 job-minutes cannot fit 2 cores for 11.0 minutes"):
        full_run.run_row(tmp_path / "results", "abc1234", "x", START, START + dt.timedelta(minutes=11), cores=2)
    with pytest.raises(ValueError, match="ended .* before it started"):
        full_run.run_row(tmp_path / "results", "abc1234", "x", START, START, cores=2)
    row = full_run.run_row(tmp_path / "results", "abc1234", "x", START, START + dt.timedelta(minutes=30), cores=2)
    assert row["machine"] == "2-core AMD EPYC without AVX-512"


def test_a_failed_step_shows_its_log(tmp_path):
    with pytest.raises(SystemExit, match=r"(?s)failed in .*exit 3.*boom"):
        full_run._step([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path, tmp_path / "log")


def test_a_failed_setup_records_nothing_and_a_wrong_mirror_is_refused(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "results" / "benchmarks").mkdir(parents=True)
    csv = repo / "results" / "benchmarks" / "full_runs.csv"
    csv.write_text(",".join(full_run.COLUMNS) + "\n")
    (tmp_path / "clone").mkdir()
    (tmp_path / "clone" / "notes.txt").write_text("someone's")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setattr(full_run, "REPO", repo)
    with pytest.raises(SystemExit, match="not a data mirror"):
        full_run.main(["--what", "x", "--mirror", str(mirror), "--workdir", str(tmp_path / "clone")])
    (mirror / "README.md").write_text("mirror")
    for workdir, message in ((repo, "this checkout or a folder holding it"), (tmp_path, "this checkout or a folder"),
                             (tmp_path / "clone", "not made by this script")):
        with pytest.raises(SystemExit, match=message):
            full_run.main(["--what", "x", "--mirror", str(mirror), "--workdir", str(workdir)])
    assert (tmp_path / "clone" / "notes.txt").read_text() == "someone's"  # not deleted
    (csv.parent / "extra.csv").write_text("uncommitted")
    with pytest.raises(SystemExit, match="results/ has uncommitted changes"):
        full_run.main(["--what", "x", "--mirror", str(mirror), "--workdir", str(tmp_path / "new"), "--copy"])
    (csv.parent / "extra.csv").unlink()
    (tmp_path / "clone" / "notes.txt").unlink()
    calls = []

    def failing_setup(cmd, cwd, log, env=None):
        calls.append(cmd)
        raise SystemExit("make setup failed")

    monkeypatch.setattr(full_run, "_step", failing_setup)
    with pytest.raises(SystemExit, match="make setup failed"):
        full_run.main(["--what", "x", "--mirror", str(mirror), "--workdir", str(tmp_path / "clone")])
    assert calls == [["make", "setup"]] and (tmp_path / "clone" / ".git").is_dir()
    assert csv.read_text() == ",".join(full_run.COLUMNS) + "\n"
