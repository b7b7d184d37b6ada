"""The comparison table in the paper's format, with the paper's numbers alongside.

Method | Accuracy | Precision | Recall | F1 | Processing time (s), one row per method
that was run, each measured value with its 95% bootstrap CI, and the paper's
reported value (where the paper reports one) in the adjacent column.  Methods are
rows, so further baselines slot in by writing one more metrics file.
"""

from __future__ import annotations

import math

import pandas as pd

COLUMNS = ("accuracy", "precision", "recall", "f1")
TITLES = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1"}


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"


def _fmt_time(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.2e}" if x < 0.01 else f"{x:.4f}"


def comparison_frame(metrics: list[dict], paper: dict) -> pd.DataFrame:
    """One row per method; ``paper`` maps method key -> {metric: value} (values may be missing)."""
    rows = []
    for m in metrics:
        key = m["method"]
        ref = (paper.get("methods") or {}).get(key, {}) or {}
        timing = m.get("timing_per_image_s", {})
        row = {"method_key": key, "Method": m["method_title"], "n_test": m["n_test"]}
        for c in COLUMNS:
            row[TITLES[c]] = m[c]["value"]
            row[f"{TITLES[c]} CI95 low"], row[f"{TITLES[c]} CI95 high"] = m[c]["ci95"]
            row[f"Paper {TITLES[c]}"] = ref.get(c)
        row["Specificity"] = m["specificity"]["value"]
        row["ROC-AUC"] = m["roc_auc"]["value"]
        row["Processing time (s)"] = timing.get("total")
        for part in ("encrypt", "decrypt", "inference"):
            row[f"{part} (s)"] = timing.get(part)
        row["Paper Processing time (s)"] = ref.get("processing_time_s")
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_markdown(frame: pd.DataFrame, dataset_title: str, paper: dict) -> str:
    head = ["Method"]
    for c in COLUMNS:
        head += [TITLES[c], f"Paper {TITLES[c]}"]
    head += ["Processing time (s)", "Paper Processing time (s)"]
    lines = [f"### {dataset_title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in frame.iterrows():
        cells = [r["Method"]]
        for c in COLUMNS:
            t = TITLES[c]
            cells.append(f"{_fmt(r[t])} [{_fmt(r[f'{t} CI95 low'])}, {_fmt(r[f'{t} CI95 high'])}]")
            cells.append(_fmt(r[f"Paper {t}"]))
        cells += [_fmt_time(r["Processing time (s)"]), _fmt_time(r["Paper Processing time (s)"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Measured values: test split, 95% percentile-bootstrap CI in brackets. Processing time is per image: "
        "AES-GCM encrypt + decrypt + CNN inference for the AES pipeline, inference only without AES.",
        f"Paper columns: {paper.get('source', 'the paper')}; — means the paper reports no such value "
        "(or it is not in our record of the paper).",
        "",
        "Timing parts per image (s):",
        "",
        "| Method | encrypt | decrypt | inference | total |",
        "|---|---|---|---|---|",
    ]
    for _, r in frame.iterrows():
        lines.append(f"| {r['Method']} | {_fmt_time(r['encrypt (s)'])} | {_fmt_time(r['decrypt (s)'])} | "
                     f"{_fmt_time(r['inference (s)'])} | {_fmt_time(r['Processing time (s)'])} |")
    aes = (paper.get("aes_time_per_image_s") or {})
    if aes:
        lines += ["", f"Paper's AES time per image: encrypt {_fmt_time(aes.get('encrypt'))} s, decrypt {_fmt_time(aes.get('decrypt'))} s."]
    return "\n".join(lines) + "\n"
