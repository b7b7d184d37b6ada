"""Where a number came from: the facts that decide whether a rerun can reproduce it to the byte.

CPU kernels differ between processors (oneDNN and Eigen choose instruction sets at run time) and threaded
reductions may sum in another order, so a trained network's predictions are reproducible to the byte only on the
same processor model and flags, library versions, backend and thread count. Recorded with every result.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ("numpy", "scikit-learn", "keras", "tensorflow", "jax", "jaxlib", "torch", "pycryptodome", "cryptography",
            "tenseal", "scikit-image", "pillow", "snakemake")
# Instruction-set flags that change which CPU kernels run (oneDNN/Eigen/XLA dispatch on these).
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
             "amx_bf16", "amx_int8")


def cpu() -> dict:
    info = {"machine": platform.machine(), "model": platform.processor() or None, "flags": [], "logical_cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not info.get("model_name"):
                    info["model_name"] = value.strip()
                elif key == "flags" and not info["flags"]:
                    have = set(value.split())
                    info["flags"] = [f for f in CPU_FLAGS if f in have]
    except OSError:
        pass
    return info


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance(threads: int | None = None, backend: str | None = None, deterministic: bool | None = None) -> dict:
    """CPU model and flags, library versions, Keras backend, thread count, accelerator (if the backend sees one)."""
    out = {"cpu": cpu(), "versions": versions(), "threads": threads, "backend": backend,
           "platform": platform.platform(terse=True)}
    if deterministic is not None:
        out["deterministic_ops"] = deterministic
    if backend == "jax" and "jax" in sys.modules:
        out["devices"] = [str(d) for d in sys.modules["jax"].devices()]
    elif backend == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["devices"] = [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else ["cpu"]
    elif backend == "tensorflow" and "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        out["devices"] = [d.name for d in tf.config.list_logical_devices()]
        # TensorFlow's thread pools are fixed at its first use: a later request is not honoured
        # (models.configure_backend warns), so record what it runs with when that differs (0 = its default)
        in_effect = tf.config.threading.get_intra_op_parallelism_threads()
        if threads and in_effect != threads:
            out["threads_in_effect"] = in_effect
    return out
