import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SHARED_DATA = Path(os.environ.get("CRYPTOMED_TEST_MIRROR", REPO.parent / "shared" / "data"))


# Unit tests over ~5 s on the 2-core CI machine, left out of `make test-fast` so that it stays near a minute
# (marked here so that the test files stay as their owners wrote them; `make test` runs them).
SLOW = {
    "tests/test_backends.py::test_train_save_load_on_backend",
    "tests/test_baselines.py::test_ckks_refuses_to_start_after_tensorflow",
    "tests/test_parallel.py::test_crypto_benchmark_runs_and_prints_every_row",
    "tests/test_transfer.py::test_efficientnet_features_of_grayscale_images",
    "tests/test_models.py::test_cosine_recipe_with_label_smoothing_ema_strong_augmentation_and_strided_stem_learns",
    "tests/test_models.py::test_soft_targets_are_what_the_network_learns_with_the_true_labels_class_weights",
}


# `make test` runs two pytest-xdist workers (`-n 2`). The end-to-end tests that use the shared small run (the
# session fixture `run` below) take turns with it, so they go to one worker together, in file order; the
# custom-dataset test (a run of its own) is one unit too; the other tests are balanced over both workers, beside
# them (the end-to-end tests leave a core idle much of the time: Snakemake chains of one job, Slurm status checks).
# Grouping only saves time: a test of these files on another worker would make a shared run of its own.
# (pytest-xdist's `xdist_group` marks do not group under pytest 9.2, so the scheduler is ours.)
GROUPS = {
    **dict.fromkeys(["tests/test_workflow.py", "tests/test_dvc_e2e.py", "tests/test_crash_safety.py",
                     "tests/test_slurm.py", "tests/test_report_browser.py"], "shared_run"),
    "tests/test_custom_workflow.py": "custom_run",
    "tests/test_dvc.py": "snakemake_in_repo",  # the tests that run Snakemake in the repository itself
    "tests/test_docs.py::test_committed_rulegraph_shows_every_rule": "snakemake_in_repo",
    "tests/test_workflow_own_runs.py::test_lint_is_clean": "snakemake_in_repo",
}


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class Scheduler(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return GROUPS.get(nodeid.split("[")[0]) or GROUPS.get(nodeid.split("::")[0]) or nodeid

    return Scheduler(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("[")[0] in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch):
    """Tests choose their key explicitly; a developer's $CRYPTOMED_KEY must not leak in."""
    monkeypatch.delenv("CRYPTOMED_KEY", raising=False)
    monkeypatch.delenv("CRYPTOMED_PASSPHRASE", raising=False)
    monkeypatch.delenv("DATA_MIRROR", raising=False)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "chest_xray_pneumonia" / "manifest.csv").is_file():
        pytest.skip(f"real data mirror not found at {SHARED_DATA} (set CRYPTOMED_TEST_MIRROR)")
    return SHARED_DATA


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def random_image(rng, h=20, w=24) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w), dtype=np.uint8)


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """The workflow run once on config/test.yaml (real images, small subset), shared by every end-to-end test.

    The run happens as a new user's would: in a git + DVC project made from the working tree
    (workflow_helpers.make_project: config.yaml is config.yaml + config/test.yaml; DVC remote in ``remote``),
    with plain `snakemake`. Tests that change files restore them; tests that need to change the project for good
    (the DVC tests: `dvc commit`, experiments) work on a copy (workflow_helpers.copy_run).
    """
    from workflow_helpers import make_project, snakemake

    if not (SHARED_DATA / "chest_xray_pneumonia" / "manifest.csv").is_file():
        pytest.skip(f"real data mirror not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("e2e")
    wd = make_project(root / "project", root / "remote")
    proc = snakemake(wd, mirror=SHARED_DATA)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd, proc


@pytest.fixture(scope="session")
def report(run, tmp_path_factory):
    """`snakemake --report` of the shared run, built once (outside the run's folder, which tests scan) and read by
    tests/test_workflow.py (every figure and caption) and tests/test_report_browser.py (opened in Chromium)."""
    from workflow_helpers import snakemake

    wd, _ = run
    path = tmp_path_factory.mktemp("report") / "report.html"
    proc = snakemake(wd, extra=["--report", str(path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path
