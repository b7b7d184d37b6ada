rule plot_results:
    # Figures of the report: training curves, confusion matrices, ROC curves, time per image by part.
    input:
        metrics=expand("results/{{dataset}}/metrics/{method}.json", method=METHODS),
        predictions=expand("results/{{dataset}}/predictions/{method}.csv", method=METHODS),
        histories=expand("results/{{dataset}}/training/{method}_history.csv", method=CNN_METHODS),
    output:
        training=report(
            "results/{dataset}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Results",
            subcategory="{dataset}",
        ),
        confusion=report(
            "results/{dataset}/figures/confusion_matrices.png",
            caption="../report/confusion_matrices.rst",
            category="Results",
            subcategory="{dataset}",
        ),
        roc=report(
            "results/{dataset}/figures/roc_curves.png",
            caption="../report/roc_curves.rst",
            category="Results",
            subcategory="{dataset}",
        ),
        timing=report(
            "results/{dataset}/figures/timing.png",
            caption="../report/timing.rst",
            category="Results",
            subcategory="{dataset}",
        ),
    log:
        "logs/plot_results/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_results/{dataset}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/plot_results.py"
