rule download:
    output:
        tar="data/raw/{dataset}/images.tar",
        manifest="data/raw/{dataset}/manifest.csv",
        report="data/raw/{dataset}/download.json",
    params:
        # Where bytes come from is not a rerun trigger (their checksums are);
        # $DATA_MIRROR overrides the configured mirror.
        mirror=config["download"].get("mirror"),
        source=lambda wildcards: config["download"]["source"].get(wildcards.dataset, "kaggle"),
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "results/benchmarks/download/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/download.py"
