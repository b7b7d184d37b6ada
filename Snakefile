# cryptomed: AES-256-GCM protected medical-image classification.
#   download -> preprocess -> encrypt -> decrypt -> train -> evaluate -> compare_baselines
# Run: snakemake --cores all   (README has the two setup commands)

from snakemake.utils import min_version

min_version("9.27")  # a rule priority given by a function (workflow/rules/train.smk)


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/encrypt.smk"
include: "workflow/rules/decrypt.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/security.smk"


rule all:
    input:
        all_targets(),
    default_target: True
