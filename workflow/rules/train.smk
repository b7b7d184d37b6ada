rule train:
    wildcard_constraints:
        method="|".join(CNN_METHODS),
    input:
        unpack(model_inputs),
    output:
        model="results/{dataset}/models/{method}.keras",
        history=report(
            "results/{dataset}/training/{method}_history.csv",
            caption="../report/history.rst",
            category="Training",
        ),
        info="results/{dataset}/training/{method}_training.json",
    params:
        train=train_params,
    threads: MAX_TRAIN_THREADS
    priority: lambda wildcards: PRIORITY.get(f"train:{wildcards.method}", 0)
    resources:
        gpu=1,
    log:
        "logs/train/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/train/{dataset}_{method}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
