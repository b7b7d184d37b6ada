rule preprocess:
    input:
        tar="data/raw/{dataset}/images.tar",
        manifest="data/raw/{dataset}/manifest.csv",
    output:
        npz="data/preprocessed/{dataset}/images.npz",
        manifest="data/preprocessed/{dataset}/split_manifest.csv",
        report=report(
            "results/{dataset}/data_report.json",
            caption="../report/data_report.rst",
            category="Data",
        ),
    params:
        settings=config["preprocess"],
    threads: 4
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/preprocess.py"
