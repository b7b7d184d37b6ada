rule decrypt:
    # Decrypts and verifies every record (a failure names it; a wrong key is reported as such) and records the
    # per-image decrypt time. Nothing decrypted is written: train and evaluate decrypt in memory what they use.
    # `verified` records what was verified (content digest, file id, counts; no key material): every later stage
    # that decrypts checks the container is still that one (an in-place edit or a rollback since stops it).
    # `lossless` is the proof that AES-GCM changes nothing the models see: digests of the decrypted arrays and of the
    # preprocessed plaintext arrays, compared (so no second, plaintext training is needed to show it).
    input:
        container="data/encrypted/{dataset}.cmed",
        plaintext="data/preprocessed/{dataset}/images.npz",
    output:
        timing="results/{dataset}/timing/decrypt.csv",
        verified="results/{dataset}/container_verified.json",
        lossless="results/{dataset}/lossless.json",
    params:
        key_file=config["crypto"]["key_file"],
        engine=config["crypto"]["engine"],
    threads: job_threads(config["crypto"]["threads"])
    priority: PRIORITY["decrypt"]
    log:
        "logs/decrypt/{dataset}.log",
    benchmark:
        "results/benchmarks/decrypt/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/decrypt.py"
