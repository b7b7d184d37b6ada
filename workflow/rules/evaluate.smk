rule evaluate:
    wildcard_constraints:
        method="|".join(CNN_METHODS),
    input:
        unpack(evaluate_inputs),
        model="results/{dataset}/models/{method}.keras",
    output:
        metrics="results/{dataset}/metrics/{method}.json",
        csv="results/{dataset}/metrics/{method}.csv",
        predictions="results/{dataset}/predictions/{method}.csv",
    params:
        title=lambda wildcards: METHODS[wildcards.method],
        key_file=config["crypto"]["key_file"],
        engine=config["crypto"]["engine"],
        backend=config["train"]["backend"],
        bootstrap_resamples=config["evaluate"]["bootstrap_resamples"],
        seed=config["evaluate"]["seed"],
        # label-free test-time batch-norm adaptation on this dataset (yes/no)
        adapt_batchnorm=lambda wildcards: wildcards.dataset in config["evaluate"]["adapt_batchnorm"],
    threads: job_threads(2)
    log:
        "logs/evaluate/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}_{method}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate.py"
