rule encrypt:
    input:
        npz="data/preprocessed/{dataset}/images.npz",
    output:
        container="data/encrypted/{dataset}.cmed",
        timing="results/{dataset}/timing/encrypt.csv",
    params:
        # The key file's path only; the key never enters config, params, logs or outputs.
        key_file=config["crypto"]["key_file"],
        engine=config["crypto"]["engine"],
    threads: job_threads(config["crypto"]["threads"])
    priority: PRIORITY["encrypt"]
    log:
        "logs/encrypt/{dataset}.log",
    benchmark:
        "results/benchmarks/encrypt/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/encrypt.py"
