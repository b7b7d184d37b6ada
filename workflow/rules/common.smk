import os

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")


DATASETS = config["datasets"]

# Method key -> title in tables. The proposed method first; baselines follow
# (more baselines slot in here with their own rules, see workflow/rules/compare.smk).
METHODS = {"aes_cnn": "AES-256-GCM + deep CNN (proposed)"}
if config["baselines"].get("plain_cnn", True):
    METHODS["plain_cnn"] = "Conventional CNN without AES (baseline)"


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(METHODS),


def all_targets():
    targets = expand("results/{dataset}/comparison.md", dataset=DATASETS)
    if config["security"]["enabled"]:
        targets.append("results/security/summary.md")
    return targets


def model_data(wildcards):
    """Images a method trains and is evaluated on: decrypted ciphertext, or plaintext for the no-AES baseline."""
    if wildcards.method == "plain_cnn":
        return f"data/preprocessed/{wildcards.dataset}/images.npz"
    return f"data/decrypted/{wildcards.dataset}.npz"


def evaluate_inputs(wildcards):
    """The proposed method is evaluated straight from the ciphertext (decrypted and verified in memory), so
    re-evaluating never needs the temporary plaintext file, and never makes training look outdated."""
    if wildcards.method == "plain_cnn":
        return {"data": f"data/preprocessed/{wildcards.dataset}/images.npz"}
    return {
        "container": f"data/encrypted/{wildcards.dataset}.cmed",
        "encrypt_timing": f"results/{wildcards.dataset}/timing/encrypt.csv",
        "decrypt_timing": f"results/{wildcards.dataset}/timing/decrypt.csv",
    }


def train_params():
    return config["train"]
