rule decrypt:
    input:
        container="data/encrypted/{dataset}.cmed",
    output:
        # Plaintext exists only while training/evaluation need it, and is never a DVC output.
        npz=temp("data/decrypted/{dataset}.npz"),
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
