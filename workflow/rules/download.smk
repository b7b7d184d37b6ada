rule download:
    input:
        download_inputs,
    output:
        tar="data/raw/{dataset}/images.tar",
        manifest="data/raw/{dataset}/manifest.csv",
        report="data/raw/{dataset}/download.json",
    params:
        # Where bytes come from is not a rerun trigger (their checksums are);
        # $DATA_MIRROR overrides the configured mirror. A custom dataset's source is its entry (imported).
        mirror=config["download"].get("mirror"),
        source=download_source,
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "results/benchmarks/download/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/download.py"
