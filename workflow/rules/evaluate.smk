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
    threads: job_threads(2)
    log:
        "logs/evaluate/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}_{method}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate.py"
