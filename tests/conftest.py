import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SHARED_DATA = Path(os.environ.get("CRYPTOMED_TEST_MIRROR", REPO.parent / "shared" / "data"))


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
    """The workflow run once on config/test.yaml (real images, small subset) in a temporary copy."""
    from workflow_helpers import copy_workflow, snakemake

    if not (SHARED_DATA / "chest_xray_pneumonia" / "manifest.csv").is_file():
        pytest.skip(f"real data mirror not found at {SHARED_DATA}")
    wd = copy_workflow(tmp_path_factory.mktemp("e2e") / "wf")
    proc = snakemake(wd, mirror=SHARED_DATA)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd, proc
