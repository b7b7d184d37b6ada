rule decrypt:
    # Decrypts and verifies every record (a failure names it; a wrong key is reported as such) and records the
    # per-image decrypt time. Nothing decrypted is written: train and evaluate decrypt in memory what they use.
    input:
        container="data/encrypted/{dataset}.cmed",
    output:
        timing="results/{dataset}/timing/decrypt.csv",
    params:
        key_file=config["crypto"]["key_file"],
        engine=config["crypto"]["engine"],
    threads: config["crypto"]["threads"]
    log:
        "logs/decrypt/{dataset}.log",
    benchmark:
        "results/benchmarks/decrypt/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/decrypt.py"
