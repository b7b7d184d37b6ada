"""Crash safety of the workflow (issue 15, point 6): `kill -9` of snakemake in the middle of training, then what
Snakemake's messages tell a user to type (`--unlock`, rerun), ends with the same predictions as an uninterrupted
run.  On a copy of the shared small run (tests/conftest.py `run`: download ... decrypt are done), one dataset, the
proposed method retrained with a small CNN.  The job orphaned by the kill trains to its end unwatched: the rerun's
weights must equal its model's (or, should it not have written one, the predictions of another uninterrupted
run).  Then, on the same copy, an in-place edit of the container that
Snakemake cannot see stops the next stage that decrypts it (issue 15, point 2).
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import SHARED_DATA
from workflow_helpers import copy_run, planned_jobs, snakemake, tool_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # kills a run, then trains once more: under a minute

TARGET = "results/chest_xray/predictions/aes_cnn.csv"
TRAIN_LOG = "logs/train/chest_xray_aes_cnn.log"
TINY = {
    "datasets": ["chest_xray"],
    # enough epochs that training is still running when it is killed (early stopping off: patience = epochs), one
    # batch an epoch to keep them short
    "train": {"epochs": 20, "patience": 20, "batch_size": 128, "members": 1,
              "model": {"filters": [8], "dense_units": 8, "augment": False}},
    "security": {"enabled": False},
}


def _snakemake_cmd(*extra):
    return [sys.executable, "-m", "snakemake", TARGET, "--cores", "2", *extra,
            "--configfile", "config/test.yaml", "tiny.yaml"]


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _say(t0, what):
    print(f"[{time.monotonic() - t0:6.1f} s] {what}")


@pytest.fixture(scope="module")
def tiny_workflow(run, tmp_path_factory):
    """A copy of the shared run with tiny.yaml: for TARGET, only train and evaluate are out of date."""
    wd = copy_run(run[0], tmp_path_factory.mktemp("crash") / "wf")
    (wd / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    for rel in (TRAIN_LOG, TARGET):  # the shared run's: its log says "training on" already
        (wd / rel).unlink()
    return wd


def test_kill_9_during_training_then_unlock_and_rerun_gives_the_same_predictions(tiny_workflow, tmp_path):
    wd = tiny_workflow
    configs = ("config/test.yaml", "tiny.yaml")
    t0 = time.monotonic()
    # start the run, kill -9 snakemake once training has started (the train job's log says so)
    env = tool_env(SHARED_DATA)
    with open(tmp_path / "killed.log", "w") as out:
        victim = subprocess.Popen(_snakemake_cmd(), cwd=wd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        log = wd / TRAIN_LOG
        _wait_for(lambda: log.is_file() and "training on" in log.read_text() or victim.poll() is not None, 300,
                  "the train job to start training")
        assert victim.poll() is None, "snakemake finished before it could be killed: make training longer"
        time.sleep(1.0)  # inside model.fit
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        _say(t0, "snakemake killed during training")
        # the job snakemake started is an orphan now (as after `kill -9 <snakemake>` in a shell); let it end
        _wait_for(lambda: not _group_alive(victim.pid), 300, "the orphaned train job to end")
    model = wd / "results/chest_xray/models/aes_cnn.keras"
    _say(t0, f"orphaned job ended; model written by it: {model.exists()}")
    assert not (wd / TARGET).exists()
    # the orphan trained to the end without snakemake: its model is an uninterrupted training's, kept as reference
    orphan_model = tmp_path / "orphan.keras"
    if model.exists():
        shutil.copy2(model, orphan_model)

    # a rerun is refused while the lock is held; the message says to --unlock
    proc = snakemake(wd, TARGET, configs=configs, mirror=SHARED_DATA)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "--unlock" in text, text[-3000:]
    proc = snakemake(wd, TARGET, configs=configs, extra=["--unlock"], mirror=SHARED_DATA)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = snakemake(wd, TARGET, configs=configs, mirror=SHARED_DATA)
    text = proc.stdout + proc.stderr
    _say(t0, f"unlocked and rerun: exit {proc.returncode}")
    if proc.returncode != 0 and "--rerun-incomplete" in text:  # what the message tells the user to type
        _say(t0, "the message says --rerun-incomplete")
        proc = snakemake(wd, TARGET, configs=configs, extra=["--rerun-incomplete"], mirror=SHARED_DATA)
        text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    _say(t0, f"jobs of the rerun: {dict(planned_jobs(proc))}")
    # the train job whose end snakemake never saw is redone, not taken from the interrupted run
    assert planned_jobs(proc)["train"] == 1 and planned_jobs(proc)["evaluate"] == 1
    after_crash = (wd / TARGET).read_text()
    assert len(after_crash.splitlines()) > 8  # a header and the test images
    if orphan_model.exists():
        # same weights as the training that ran to its end unwatched, so the same predictions
        assert _weights(model) == _weights(orphan_model)
        _say(t0, "the rerun's weights equal the orphaned job's")
        return
    # the orphan wrote no model: the uninterrupted run, train and evaluate again from the same verified container
    proc = snakemake(wd, TARGET, configs=configs, extra=["--forcerun", "train"], mirror=SHARED_DATA)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    _say(t0, "uninterrupted rerun of train and evaluate done")
    assert after_crash == (wd / TARGET).read_text()


def _weights(path) -> dict[str, bytes]:
    """Every weight array of a .keras file (its model.weights.h5), by name: no Keras needed to compare two."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as z:
        data = z.read("model.weights.h5")
    out = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: out.update({name: obj[()].tobytes()}) if isinstance(obj, h5py.Dataset) else None)
    assert out
    return out


def test_an_edit_invisible_to_snakemake_stops_evaluate(tiny_workflow):
    """A container edited in place after the decrypt rule ran, size and modification time kept: Snakemake sees
    nothing to do, and a stage that decrypts it again (here evaluate, forced) stops with ContainerMismatchError."""
    from crypto_helpers import layout

    wd, configs = tiny_workflow, ("config/test.yaml", "tiny.yaml")
    if not (wd / TARGET).is_file():
        pytest.skip("needs the run of the test above")
    container = wd / "data/encrypted/chest_xray.cmed"
    st = container.stat()
    data = bytearray(container.read_bytes())
    data[layout(container)[2][0]["tag"]] ^= 1  # record 0 (a train, val or test record: caught either way)
    container.write_bytes(bytes(data))
    os.utime(container, ns=(st.st_atime_ns, st.st_mtime_ns))
    proc = snakemake(wd, TARGET, configs=configs, extra=["-n"], mirror=SHARED_DATA)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    proc = snakemake(wd, TARGET, configs=configs, extra=["--forcerun", "evaluate"], mirror=SHARED_DATA)
    assert proc.returncode != 0
    log = (wd / "logs/evaluate/chest_xray_aes_cnn.log").read_text()
    assert "ContainerMismatchError" in log and "modified since the decrypt rule verified it" in log
    assert not (wd / TARGET).exists()  # Snakemake removed the failed job's outputs
