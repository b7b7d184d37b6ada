"""Every shipped configuration (params.yaml, and each config/*.yaml as Snakemake applies it on top: a recursive
update) passes the workflow's JSON schema, so a typo in a configuration nobody runs in CI is still caught."""
from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)  # the draft the schema declares, as Snakemake


def _update(base: dict, over: dict) -> dict:
    """``over`` applied on top of ``base`` by Snakemake's own merge of a --configfile."""
    update_config(base, over)
    return base


@pytest.mark.parametrize("overrides", [None, *sorted(p.name for p in (ROOT / "config").glob("*.yaml"))])
def test_shipped_configuration_passes_the_schema(overrides):
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    if overrides:
        config = _update(config, yaml.safe_load((ROOT / "config" / overrides).read_text()))
    VALIDATOR.validate(config)


def test_a_misspelled_key_fails_the_schema():
    config = _update(yaml.safe_load((ROOT / "params.yaml").read_text()),
                     {"baselines": {"transfer": {"efficientnet_lite0": {"finetune": {"dataset": ["chest_xray"]}}}}})
    with pytest.raises(jsonschema.ValidationError, match="dataset"):
        VALIDATOR.validate(config)
