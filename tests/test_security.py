import numpy as np
import pytest

from cryptomed.security import (adjacent_correlation, analyse_image, critical_values, encrypt_image, entropy,
                                npcr_uaci, repeated_blocks, summarise)


@pytest.mark.parametrize("size,npcr,low,high", [
    # Table values published by Wu, Noonan & Agaian (2011), alpha = 0.05
    (256, 99.5693, 33.2824, 33.6447),
    (512, 99.5893, 33.3730, 33.5541),
])
def test_critical_values_match_the_published_table(size, npcr, low, high):
    c = critical_values(size, size)
    assert c.npcr_min == pytest.approx(npcr, abs=1e-4)
    assert (c.uaci_low, c.uaci_high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


def test_basic_statistics():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    assert entropy(ramp) == pytest.approx(8.0)
    assert entropy(np.zeros((8, 8), np.uint8)) == 0.0
    assert adjacent_correlation(ramp)["horizontal"] == pytest.approx(1.0)
    assert repeated_blocks(np.zeros((16, 16), np.uint8)) == pytest.approx(15 / 16)
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    assert npcr_uaci(a, b) == (pytest.approx(100 / 16), pytest.approx(100 / 16))


def test_ecb_leaks_structure_and_gcm_with_fresh_nonces_does_not():
    key = bytes(range(32))
    img = np.zeros((64, 64), np.uint8)
    img[16:48, 16:48] = 200  # uniform regions, like the padding around an X-ray
    ecb = encrypt_image(img, "ECB", key, None)
    assert repeated_blocks(ecb) == repeated_blocks(img) > 0.9
    gcm = encrypt_image(img, "GCM", key, bytes(12))
    assert repeated_blocks(gcm) == 0 and entropy(gcm) > 7.9


def test_differential_results_per_mode():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (128, 128), dtype=np.uint8)
    rows = {r["mode"]: r for r in analyse_image(img, rng)[0]}
    assert rows["ECB"]["npcr"] < 1 and rows["CTR, reused nonce"]["npcr"] < 0.1 and rows["GCM, reused nonce"]["npcr"] < 0.1
    fresh = rows["GCM, fresh nonce (cryptomed)"]
    assert fresh["npcr"] > 99 and 32 < fresh["uaci"] < 35
    table = summarise([{"dataset": "d", "image": 0, **r} for r in rows.values()])
    assert list(table["mode"])[0] == "Plain image" and len(table) == 8
