rule security_analysis:
    input:
        tars=expand("data/raw/{dataset}/images.tar", dataset=DATASETS),
        manifests=expand("data/raw/{dataset}/manifest.csv", dataset=DATASETS),
    output:
        per_image="results/security/per_image.csv",
        summary="results/security/summary.csv",
        md=report("results/security/summary.md", caption="../report/security.rst", category="Security analysis"),
        modes_figure=report(
            "results/security/modes.png", caption="../report/security_modes.rst", category="Security analysis"
        ),
        histogram_figure=report(
            "results/security/histograms.png",
            caption="../report/security_histograms.rst",
            category="Security analysis",
        ),
    params:
        datasets=DATASETS,
        security=config["security"],
    log:
        "logs/security_analysis.log",
    benchmark:
        "results/benchmarks/security_analysis.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/security_analysis.py"
