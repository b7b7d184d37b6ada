rule compare_baselines:
    input:
        metrics=expand("results/{{dataset}}/metrics/{method}.json", method=METHODS),
        paper="workflow/resources/paper_reported.yaml",
    output:
        csv="results/{dataset}/comparison.csv",
        md=report(
            "results/{dataset}/comparison.md",
            caption="../report/comparison.rst",
            category="Comparison",
        ),
    log:
        "logs/compare_baselines/{dataset}.log",
    benchmark:
        "results/benchmarks/compare_baselines/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/compare_baselines.py"
