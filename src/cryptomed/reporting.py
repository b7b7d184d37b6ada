"""The comparison table in the paper's format, with the paper's numbers alongside, significance tests and a figure.

One row per method that was run (the proposed method first): Accuracy, Precision, Recall, F1,
Specificity, ROC-AUC, each with its 95% bootstrap CI; the processing time per image with its parts
(encrypt / decrypt / inference); the paper's reported value where the paper reports one; and an
exact McNemar test of each baseline against the proposed method on the same test images.
Published reference points for the dataset follow the table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PROPOSED = "aes_cnn"
METRICS = ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc")
TITLES = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1",
          "specificity": "Specificity", "roc_auc": "AUC"}
PAPER_COLUMNS = ("accuracy", "precision", "recall", "f1")
PARTS = ("encrypt", "decrypt", "inference")


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x, digits=3):
    return "—" if _missing(x) else f"{x:.{digits}f}"


def _fmt_time(x):
    if _missing(x):
        return "—"
    return f"{x:.2e}" if x < 0.01 else f"{x:.4f}"


def _fmt_p(p):
    if _missing(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact (binomial) McNemar test on paired correctness; b = only A right, c = only B right."""
    from scipy.stats import binom

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else min(1.0, 2 * float(binom.cdf(min(only_a, only_b), n, 0.5)))
    return {"only_proposed_correct": only_a, "only_baseline_correct": only_b, "p_value": p}


def paired_tests(predictions: dict[str, pd.DataFrame]) -> dict[str, dict]:
    """McNemar of every method against the proposed one, on the test images both predicted (matched by id)."""
    if PROPOSED not in predictions:
        return {}
    by_id = {m: p.set_index(p["id"].astype(str)) for m, p in predictions.items()}
    ref = by_id[PROPOSED]
    out = {}
    for method, other in by_id.items():
        if method == PROPOSED:
            continue
        common = ref.index.intersection(other.index)
        a, b = ref.loc[common], other.loc[common]
        out[method] = {**mcnemar((a["predicted"] == a["label"]).to_numpy(), (b["predicted"] == b["label"]).to_numpy()),
                       "n_paired": int(len(common)),
                       "identical_predictions": bool((a["predicted"].to_numpy() == b["predicted"].to_numpy()).all())}
    return out


def comparison_frame(metrics: list[dict], paper: dict, predictions: dict[str, pd.DataFrame] | None = None,
                     not_run: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per method; ``paper`` maps method key -> {metric: value} (values may be missing).

    ``not_run``: method key -> {"title", "reason"} of baselines that could not run here (e.g. no ImageNet
    weights); they get a row without measurements (``run`` False) that says why, next to the paper's values."""
    tests = paired_tests(predictions or {})
    rows = []
    for m in metrics:
        key = m["method"]
        ref = (paper.get("methods") or {}).get(key, {}) or {}
        timing = m.get("timing_per_image_s", {})
        row = {"method_key": key, "Method": m["method_title"], "n_test": m["n_test"]}
        for c in METRICS:
            row[TITLES[c]] = m[c]["value"]
            row[f"{TITLES[c]} CI95 low"], row[f"{TITLES[c]} CI95 high"] = m[c]["ci95"]
        for c in PAPER_COLUMNS:
            row[f"Paper {TITLES[c]}"] = ref.get(c)
        row["Processing time (s)"] = timing.get("total")
        for part in PARTS:
            row[f"{part} (s)"] = timing.get(part)
        row["Paper Processing time (s)"] = ref.get("processing_time_s")
        t = tests.get(key, {})
        row["McNemar p vs proposed"] = t.get("p_value")
        row["only proposed correct"] = t.get("only_proposed_correct")
        row["only this correct"] = t.get("only_baseline_correct")
        row["identical predictions to proposed"] = t.get("identical_predictions")
        row["notes"] = m.get("comparison_note", "")
        row["run"] = True
        rows.append(row)
    for key, info in (not_run or {}).items():
        ref = (paper.get("methods") or {}).get(key, {}) or {}
        row = {"method_key": key, "Method": f"{info['title']} — {info['reason'].split(' (')[0]}", "n_test": None}
        for c in METRICS:
            row[TITLES[c]] = row[f"{TITLES[c]} CI95 low"] = row[f"{TITLES[c]} CI95 high"] = math.nan
        for c in PAPER_COLUMNS:
            row[f"Paper {TITLES[c]}"] = ref.get(c)
        for col in ("Processing time (s)", *(f"{p} (s)" for p in PARTS), "McNemar p vs proposed"):
            row[col] = math.nan
        row["Paper Processing time (s)"] = ref.get("processing_time_s")
        row["only proposed correct"] = row["only this correct"] = row["identical predictions to proposed"] = None
        row["notes"], row["run"] = info["reason"], False
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_markdown(frame: pd.DataFrame, dataset_title: str, paper: dict, references: list[dict] | None = None,
                        lossless: dict | None = None) -> str:
    head = ["Method"]
    for c in METRICS:
        head.append(TITLES[c])
        if c in PAPER_COLUMNS:
            head.append(f"Paper {TITLES[c]}")
    head += ["Processing time per image (s): total [encrypt / decrypt / inference]", "Paper Processing time (s)",
             "McNemar vs proposed: p (only proposed / only this correct)"]
    lines = [f"### {dataset_title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in frame.iterrows():
        cells = [r["Method"]]
        ran = bool(r.get("run", True))
        for c in METRICS:
            t = TITLES[c]
            cells.append(f"{_fmt(r[t])} [{_fmt(r[f'{t} CI95 low'])}, {_fmt(r[f'{t} CI95 high'])}]" if ran else "—")
            if c in PAPER_COLUMNS:
                cells.append(_fmt(r[f"Paper {t}"]))
        parts = " / ".join(_fmt_time(r[f"{p} (s)"]) for p in PARTS)
        cells += [f"{_fmt_time(r['Processing time (s)'])} [{parts}]" if ran else "—",
                  _fmt_time(r["Paper Processing time (s)"])]
        if r["method_key"] == PROPOSED:
            cells.append("(reference)")
        elif _missing(r["McNemar p vs proposed"]):
            cells.append("—")
        else:
            same = " — identical predictions" if r["identical predictions to proposed"] else ""
            cells.append(f"{_fmt_p(r['McNemar p vs proposed'])} ({int(r['only proposed correct'])} / "
                         f"{int(r['only this correct'])}){same}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Measured values: test split, 95% percentile-bootstrap CI in brackets. Processing time per image: AES-GCM "
        "encrypt + decrypt + inference for methods that read the AES container; inference only for plaintext "
        "methods; for homomorphic encryption, CKKS encrypt / CKKS decrypt / encrypted evaluation on the server. "
        "McNemar: exact binomial test on the test images where exactly one of the two methods is right.",
        f"Paper columns: {paper.get('source', 'the paper')}; — means the paper reports no such value "
        "(or it is not in our record of the paper).",
    ]
    if lossless is not None:
        verdict = "equal" if lossless["identical"] else "DIFFER FROM"
        lines += ["", f"AES-GCM round trip: the {lossless['records']} decrypted records {verdict} the preprocessed "
                      "plaintext arrays bit for bit (SHA-256 of images, labels, ids and splits, `lossless.json`), so "
                      "a model sees the same inputs with or without AES."]
    aes = paper.get("aes_time_per_image_s") or {}
    if aes:
        lines += ["", f"Paper's AES time per image: encrypt {_fmt_time(aes.get('encrypt'))} s, "
                      f"decrypt {_fmt_time(aes.get('decrypt'))} s."]
    if references:
        lines += ["", "Published reference points for this dataset (not run here):", ""]
        for ref in references:
            vals = ", ".join(f"{k} {v}" for k, v in ref.items() if k not in ("name", "source"))
            lines.append(f"- {ref['name']}: {vals} ({ref.get('source', '')})")
    notes = [f"- {r['Method']}: {r['notes']}" for _, r in frame.iterrows() if r.get("notes")]
    if notes:
        lines += ["", "Notes:", ""] + notes
    return "\n".join(lines) + "\n"


def comparison_figure(frame: pd.DataFrame, title: str, paper: dict, path) -> None:
    """Accuracy with 95% CI per method (paper's claim as a line) and processing time per image by part (log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_path

    if "run" in frame:
        frame = frame[frame["run"].astype(bool)]  # rows of baselines that were not run have nothing to plot
    n = len(frame)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.6 * n + 2.2), gridspec_kw={"width_ratios": [1, 1]})
    y = np.arange(n)[::-1]
    acc = frame["Accuracy"].to_numpy(float)
    err = np.vstack([acc - frame["Accuracy CI95 low"].to_numpy(float), frame["Accuracy CI95 high"].to_numpy(float) - acc])
    ax1.barh(y, acc, xerr=err, color="0.55", capsize=3)
    claimed = ((paper.get("methods") or {}).get(PROPOSED) or {}).get("accuracy")
    if claimed:
        ax1.axvline(claimed, color="firebrick", ls="--", lw=1)
        ax1.text(claimed, n - 0.4, f" paper {claimed:.3f}", color="firebrick", fontsize=8, va="bottom")
    ax1.set_yticks(y, frame["Method"], fontsize=8)
    ax1.set_xlim(0, 1)
    ax1.set_xlabel("test accuracy (95% bootstrap CI)")
    # parts side by side (not stacked: stacking on a log axis would exaggerate the first part)
    colors = {"encrypt": "tab:blue", "decrypt": "tab:orange", "inference": "0.45"}
    for k, part in enumerate(PARTS):
        vals = frame[f"{part} (s)"].astype(float).to_numpy()
        shown = ~np.isnan(vals) & (vals > 0)
        ax2.barh(y[shown] + (1 - k) * 0.27, vals[shown], height=0.25, color=colors[part], label=part)
    aes = paper.get("aes_time_per_image_s") or {}
    for part, style in (("encrypt", ":"), ("decrypt", "--")):
        if aes.get(part):
            ax2.axvline(aes[part], color="firebrick", ls=style, lw=1, label=f"paper AES {part}")
    ax2.set_xscale("log")
    positive = frame[[f"{p} (s)" for p in PARTS]].astype(float).to_numpy()
    positive = positive[~np.isnan(positive) & (positive > 0)]
    if positive.size:
        ax2.set_xlim(left=positive.min() / 5)  # bars start well left of the smallest part
    ax2.set_yticks(y, [""] * n)
    ax2.set_xlabel("processing time per image (s, log scale)")
    ax2.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
