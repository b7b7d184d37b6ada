rule compare_baselines:
    input:
        metrics=expand("results/{{dataset}}/metrics/{method}.json", method=METHODS),
        predictions=expand("results/{{dataset}}/predictions/{method}.csv", method=METHODS),
        paper="workflow/resources/paper_reported.yaml",
        lossless="results/{dataset}/lossless.json",
    params:
        not_run=NOT_RUN,  # rows for baselines that could not run (e.g. VGG16 without ImageNet weights), with why
    output:
        csv="results/{dataset}/comparison.csv",
        md=report(
            "results/{dataset}/comparison.md",
            caption="../report/comparison.rst",
            category="Comparison",
        ),
        tests="results/{dataset}/paired_tests.json",
        figure=report(
            "results/{dataset}/comparison.png",
            caption="../report/comparison_figure.rst",
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
