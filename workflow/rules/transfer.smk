# Transfer-learning baselines (VGG16, ResNet50). Backbone weights: ImageNet when available locally, else
# cross-dataset pretraining on the run's other dataset (see src/cryptomed/transfer.py and common.smk).


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
