# The paper's non-CNN baselines, one rule each (the CNN baselines plain_cnn and shallow_cnn use train/evaluate).
# Both read the AES container (decrypted and verified in memory) so they see exactly the proposed method's data.


rule baseline_aes_classical:
    input:
        unpack(baseline_inputs),
    output:
        metrics="results/{dataset}/metrics/aes_classical.json",
        csv="results/{dataset}/metrics/aes_classical.csv",
        predictions="results/{dataset}/predictions/aes_classical.csv",
    params:
        title=METHODS.get("aes_classical"),
        baseline=BASELINES["aes_classical"],
        key_file=config["crypto"]["key_file"],
        engine=config["crypto"]["engine"],
        bootstrap_resamples=config["evaluate"]["bootstrap_resamples"],
        seed=config["evaluate"]["seed"],
    priority: PRIORITY["baseline_aes_classical"]
    log:
        "logs/baseline_aes_classical/{dataset}.log",
    benchmark:
        "results/benchmarks/baseline_aes_classical/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/baseline_aes_classical.py"


rule baseline_he_linear:
    input:
        unpack(baseline_inputs),
    output:
        metrics="results/{dataset}/metrics/he_linear.json",
        csv="results/{dataset}/metrics/he_linear.csv",
        predictions="results/{dataset}/predictions/he_linear.csv",
    params:
        title=METHODS.get("he_linear"),
        baseline=BASELINES["he_linear"],
        key_file=config["crypto"]["key_file"],
        engine=config["crypto"]["engine"],
        bootstrap_resamples=config["evaluate"]["bootstrap_resamples"],
        seed=config["evaluate"]["seed"],
    priority: PRIORITY["baseline_he_linear"]
    log:
        "logs/baseline_he_linear/{dataset}.log",
    benchmark:
        "results/benchmarks/baseline_he_linear/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/baseline_he_linear.py"


# Not a paper baseline: the mean of the class probabilities of the proposed CNN and the EfficientNet-Lite0 transfer
# baseline (baselines.ensemble.members), nothing fitted; chosen by a rule fixed in advance on validation
# (docs/tuning.md). It reads the members' prediction files, so it reruns when either member does.
rule baseline_ensemble:
    input:
        unpack(ensemble_inputs),
    output:
        metrics="results/{dataset}/metrics/ensemble.json",
        csv="results/{dataset}/metrics/ensemble.csv",
        predictions="results/{dataset}/predictions/ensemble.csv",
    params:
        title=METHODS.get("ensemble"),
        members=ENSEMBLE_MEMBERS,
        bootstrap_resamples=config["evaluate"]["bootstrap_resamples"],
        seed=config["evaluate"]["seed"],
    log:
        "logs/baseline_ensemble/{dataset}.log",
    benchmark:
        "results/benchmarks/baseline_ensemble/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/baseline_ensemble.py"
