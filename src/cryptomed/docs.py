"""Result numbers in README.md and docs/*.md, generated from the files a run wrote (``results/``), never typed.

A generated block is delimited by two HTML comments (invisible on GitHub)::

    <!-- BEGIN generated: headline:chest_xray -->
    ...written by `python -m cryptomed docs`...
    <!-- END generated: headline:chest_xray -->

The name says what goes in the block (``GENERATORS``: ``headline:<dataset>``, ``comparison:<dataset>``,
``data:<dataset>``, ``findings:<dataset>``, ``aes-timing``, ``pipeline-time``, ``security``,
``security-table:<dataset>``); the block's text is
rebuilt from ``results/`` each time.

    python -m cryptomed docs            rewrite every block in README.md and docs/*.md from results/
    python -m cryptomed docs --check    exit 1, showing the difference, if any block differs from results/,
                                        or if a result-like number (0.ddd, d.dde-0d) is typed outside a block

``tests/test_docs.py`` runs the check on the checkout, so a rerun of the pipeline without
``python -m cryptomed docs`` (or a number typed by hand) fails the tests.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

BLOCK = re.compile(r"(<!-- BEGIN generated: (?P<name>[\w:.-]+) -->\n)(?P<body>.*?)(<!-- END generated: (?P=name) -->)",
                   re.S)
BEGIN_OR_END = re.compile(r"<!-- (BEGIN|END) generated: ([\w:.-]+) -->")
# numbers shaped like a result (a metric with three decimals, a time in scientific notation) outside any block
RESULT_LIKE = re.compile(r"(?<![\w.])(0\.\d{3,}|\d\.\d{1,3}e-0\d)(?![\w.])")
PAPER_FILE = "workflow/resources/paper_reported.yaml"
DATASET_ORDER = ("chest_xray", "brain_mri")


class DocsError(Exception):
    """A block that cannot be generated (unknown name, results missing) or malformed markers."""


# ---------------------------------------------------------------- formatting

def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def f3(x) -> str:
    return "—" if _missing(x) else f"{float(x):.3f}"


def ftime(x) -> str:
    return "—" if _missing(x) else f"{float(x):.2e}"


def fp(p) -> str:
    return "—" if _missing(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def fint(n) -> str:
    return f"{int(n):,}"


def fus(seconds) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def ci(frame_row, title: str) -> str:
    return f"{f3(frame_row[title])} [{f3(frame_row[f'{title} CI95 low'])}, {f3(frame_row[f'{title} CI95 high'])}]"


def _table(head: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    sep = align or "|" + "---|" * len(head)
    return ["| " + " | ".join(head) + " |", sep] + ["| " + " | ".join(r) + " |" for r in rows]


# ---------------------------------------------------------------- reading results

# Files under results/ that the pipeline does not write, and what does (for the error naming a missing one)
MADE_BY = {
    "history/": "a snapshot of an earlier default run's files, kept in git (docs/tuning.md says which)",
    "seeds/": "made by benchmarks/seed_spread.py (docs/results.md, seed spread)",
    "tuning/": "made by the benchmark scripts that docs/tuning.md names",
}


class Results:
    """Lazy, cached access to a results directory (and the paper's numbers next to the workflow)."""

    def __init__(self, results: Path, root: Path | None = None):
        self.dir = Path(results)
        self.root = Path(root) if root else self.dir.parent
        self._cache: dict = {}

    def _need(self, rel: str) -> Path:
        path = self.dir / rel
        if not path.is_file():
            hint = next((how for prefix, how in MADE_BY.items() if rel.startswith(prefix)),
                        "run the pipeline (snakemake --cores all) first")
            raise DocsError(f"{path} is missing: {hint}")
        return path

    def json(self, rel: str) -> dict:
        if rel not in self._cache:
            self._cache[rel] = json.loads(self._need(rel).read_text())
        return self._cache[rel]

    def csv(self, rel: str) -> pd.DataFrame:
        if rel not in self._cache:
            self._cache[rel] = pd.read_csv(self._need(rel))
        return self._cache[rel]

    def comparison(self, ds: str) -> pd.DataFrame:
        return self.csv(f"{ds}/comparison.csv")

    def metrics(self, ds: str, method: str) -> dict:
        return self.json(f"{ds}/metrics/{method}.json")

    def datasets(self) -> list[str]:
        found = {p.parent.name for p in self.dir.glob("*/comparison.csv")}
        return [d for d in DATASET_ORDER if d in found] + sorted(found - set(DATASET_ORDER))

    def paper(self) -> dict:
        path = self.root / PAPER_FILE
        return yaml.safe_load(path.read_text()) if path.is_file() else {}


# ---------------------------------------------------------------- generators

def _f1_title(res: Results, ds: str) -> str:
    averaging = res.metrics(ds, "aes_cnn").get("averaging", "")
    return "macro F1" if "macro" in averaging else "F1"


def headline(res: Results, ds: str) -> str:
    """One table per dataset: the headline metrics with 95% CIs, time per image, McNemar against the proposed."""
    frame, report = res.comparison(ds), res.json(f"{ds}/data_report.json")
    paper = res.paper()
    n_test = int(frame.loc[frame["method_key"] == "aes_cnn", "n_test"].iloc[0]) if "aes_cnn" in set(
        frame["method_key"]) else int(frame["n_test"].max())
    rows = []
    for _, r in frame.iterrows():
        if r["method_key"] == "aes_cnn":
            p = "—"
        elif r.get("identical predictions to proposed") is True or str(
                r.get("identical predictions to proposed")) == "True":
            p = f"{fp(r['McNemar p vs proposed'])} (identical predictions)"
        else:
            p = fp(r["McNemar p vs proposed"])
        name = f"**{r['Method']}**" if r["method_key"] == "aes_cnn" else r["Method"]
        if int(r["n_test"]) != n_test:
            name += f" ({fint(r['n_test'])} test images)"
        rows.append([name, ci(r, "Accuracy"), ci(r, "F1"), f3(r["Specificity"]), ci(r, "AUC"),
                     ftime(r["Processing time (s)"]), p])
    claim = ((paper.get("methods") or {}).get("aes_cnn") or {}).get("accuracy")
    if claim is not None:
        rows.append(["*Paper's claim (proposed)*", f"*{f3(claim)}*", "", "", "", "", ""])
    for ref in (paper.get("references") or {}).get(ds, []):
        rows.append([f"*{ref['name']}*", f"*{f3(ref.get('accuracy'))}*" if "accuracy" in ref else "", "", "",
                     f"*{f3(ref.get('auc'))}*" if "auc" in ref else "", "", ""])
    lines = [f"#### {report.get('title', ds)} — {fint(n_test)} test images", ""]
    lines += _table(["Method", "Accuracy [95% CI]", f"{_f1_title(res, ds)} [95% CI]", "Specificity",
                     "AUC [95% CI]", "Time per image (s)", "McNemar p"], rows)
    lines += ["", short_data_line(res, ds)]
    return "\n".join(lines) + "\n"


def short_data_line(res: Results, ds: str) -> str:
    """Images per split, the input size and the two leakage counts a reader needs under a headline table; every
    other count is in the ``data:<dataset>`` block of docs/results.md."""
    report = res.json(f"{ds}/data_report.json")
    counts = report.get("counts", {})
    text = "Images: " + _kept(counts)
    size = (report.get("settings") or {}).get("image_size")
    if size:
        text += f" at {size}×{size} px"
    dropped = (report.get("near_copies") or {}).get("train_copies_of_test_dropped")
    if isinstance(dropped, dict):
        text += f"; training copies of test images dropped: {fint(dropped.get('total', 0))}"
    patients = (report.get("patients") or {}).get("train_val_patients")
    both = ((report.get("near_copies") or {}).get("check") or {}).get("patients_in_train_and_val")
    if patients:
        text += f"; patients in train + validation: {fint(patients)}"
        text += f" (in both: {fint(both)})" if both is not None else ""
        shared = (report.get("patients") or {}).get("official_train_test_patients_shared")
        if shared:
            text += (f"; patient ids in both the official train and test splits: {fint(shared)} (reported, "
                     "not repaired)")
    return text + f" (`results/{ds}/data_report.json`; every count: [docs/results.md](docs/results.md))."


def _counts(node, prefix="") -> list[tuple[str, int]]:
    out = []
    for k, v in (node or {}).items():
        path = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            out.append((path, v))
        elif isinstance(v, dict):
            out += _counts(v, path + " / ")
    return out


def _label(key: str) -> str:
    return key.replace("_", " ")


def _summary_counts(node: dict, prefix: str) -> list[tuple[str, int]]:
    """The counts a reader wants from a nested report section, whatever its keys: integers at its top level, the
    ``total`` (and ``by_kind``) of a breakdown, and every integer of a small all-integer sub-dict (a check)."""
    out = []
    for key, value in node.items():
        label = f"{prefix}{key}"
        if isinstance(value, bool) or key in ("thumbnail", "seed"):
            continue
        if isinstance(value, int):
            out.append((label, value))
        elif isinstance(value, dict):
            if isinstance(value.get("total"), int) and not isinstance(value.get("total"), bool):
                out.append((label, value["total"]))
                by_kind = value.get("by_kind")
                if isinstance(by_kind, dict):
                    out += [(f"{label} / {k}", v) for k, v in by_kind.items()
                            if isinstance(v, int) and not isinstance(v, bool)]
            elif value and len(value) <= 8 and all(isinstance(v, int) and not isinstance(v, bool)
                                                   for v in value.values()):
                out += [(f"{label} / {k}", v) for k, v in value.items()]
    return out


def _kept(counts: dict) -> str:
    return " / ".join(f"{fint(counts[s]['total'])} {s}" for s in ("train", "val", "test") if s in counts)


def data_line(res: Results, ds: str) -> str:
    """Images kept per split and the counts the data report holds on what was removed or grouped: every integer
    under ``dropped``, and the summary counts of any duplicate / near-copy / patient / group section."""
    report = res.json(f"{ds}/data_report.json")
    counts = report.get("counts", {})
    kept = _kept(counts)
    removed = _counts(report.get("dropped"))
    for key, value in report.items():
        if key in ("dropped", "counts", "settings") or not any(
                w in key for w in ("duplicate", "near", "group", "patient")):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            removed.append((key, value))
        elif isinstance(value, dict):
            removed += _summary_counts(value, key + " / ")
    text = f"Images kept (`results/{ds}/data_report.json`): {kept}"
    if "source_images" in report:
        text += f" of {fint(report['source_images'])} source images"
    size = (report.get("settings") or {}).get("image_size")
    if size:
        text += f", at {size}×{size} px"
    if removed:
        text += "; counted by preprocess: " + ", ".join(f"{_label(k)}: {fint(v)}" for k, v in removed)
    return text + "."


def data_block(res: Results, ds: str) -> str:
    return data_line(res, ds) + "\n"


def comparison(res: Results, ds: str) -> str:
    """The full table the compare_baselines rule wrote, as it wrote it (heading level moved under the page's)."""
    text = res._need(f"{ds}/comparison.md").read_text()
    return re.sub(r"^### ", "#### ", text, flags=re.M).rstrip("\n") + "\n"


def _median_seconds(res: Results, ds: str, part: str) -> float:
    return float(res.csv(f"{ds}/timing/{part}.csv")["seconds"].median())


def _best_epoch_val_accuracy(res: Results, ds: str, method: str = "aes_cnn"):
    info = res.json(f"{ds}/training/{method}_training.json")
    hist = res.csv(f"{ds}/training/{method}_history.csv")
    best = info.get("best_epoch")
    row = hist[hist["epoch"] == best] if best is not None and "epoch" in hist else hist.iloc[0:0]
    val = float(row["val_accuracy"].iloc[0]) if len(row) and "val_accuracy" in row else None
    return info, best, val


def _training_summary(info: dict, best, val) -> str:
    """How the proposed CNN was trained: one network's epochs, or a seed ensemble's members (and flips)."""
    members = info.get("members")
    if not members:
        return f"{info.get('epochs_run')} epochs run, weights of epoch {best} restored, validation accuracy there {f3(val)}"
    seeds = ", ".join(str(m["seed"]) for m in members)
    epochs = " / ".join(f"{m['epochs_run']} ({m['best_epoch']})" for m in members)
    flip = ", each also on the mirrored image" if info.get("flip_tta") else ""
    what = f"mean of {len(members)} networks (seeds {seeds})" if len(members) > 1 else f"one network (seed {seeds})"
    return f"{what}{flip}; epochs run (best) {epochs}; validation accuracy {f3(info.get('val_accuracy'))}"


def _p_text(p: float) -> str:
    """"McNemar p < 0.001" or "McNemar p = 0.420"."""
    return "McNemar p " + fp(p) if fp(p).startswith("<") else "McNemar p = " + fp(p)


def _mcnemar(row) -> str:
    p = row.get("McNemar p vs proposed")
    if _missing(p):
        return "no paired test"
    p = float(p)
    return _p_text(p) + (", significant" if p < 0.05 else ", not significant")


def _benchmark_seconds(path) -> float:
    """Wall seconds of one job from its Snakemake benchmark file (the mean over its repeats)."""
    return float(pd.read_csv(path, sep="\t")["s"].astype(float).mean())


def verdict(res: Results, arg: str | None) -> str:
    """Per dataset, one sentence on how the proposed method ranks by test accuracy: every method above it (or tied),
    or else the next best, each with the McNemar test of that pair (from ``comparison.csv``)."""
    lines = []
    for ds in res.datasets():
        frame = res.comparison(ds).set_index("method_key")
        title = res.json(f"{ds}/data_report.json").get("title", ds)
        if "aes_cnn" not in frame.index or len(frame) < 2:
            continue
        prop, others = frame.loc["aes_cnn"], frame.drop(index="aes_cnn")
        acc = float(prop["Accuracy"])
        others = others.assign(_acc=others["Accuracy"].astype(float)).sort_values("_acc", ascending=False)
        above = [f"{r['Method']} {f3(r['_acc'])} ({_mcnemar(r)})" for _, r in others.iterrows() if r["_acc"] > acc]
        tied = [f"{r['Method']} ({_mcnemar(r)})" for _, r in others.iterrows() if r["_acc"] == acc]
        rival = others[others["_acc"] < acc].iloc[0] if (others["_acc"] < acc).any() else None
        if above:
            text = f"the proposed method ({f3(acc)}) is below {'; '.join(above)}"
            if rival is not None:
                text += (f"; it is above the other methods, the best of them {rival['Method']} {f3(rival['_acc'])} "
                         f"({_mcnemar(rival)})")
        else:
            text = f"the proposed method is the most accurate ({f3(acc)})"
            if rival is not None:
                level = others[others["_acc"] == rival["_acc"]]  # methods tied for next best: every one named
                if len(level) > 1:
                    named = "; ".join(f"{r['Method']} ({_mcnemar(r)})" for _, r in level.iterrows())
                    text += f"; next best, tied at {f3(rival['_acc'])}: {named}"
                else:
                    text += f"; the next best, {rival['Method']}, scores {f3(rival['_acc'])} ({_mcnemar(rival)})"
        if tied:
            text += f"; tied with {'; '.join(tied)}"
        lines.append(f"- **{title}:** {text}.")
    return "\n".join(lines) + "\n"


def findings(res: Results, ds: str) -> str:
    """The numbers behind the prose of docs/results.md, one dataset, each with the file it comes from."""
    frame = res.comparison(ds).set_index("method_key")
    tests = res.json(f"{ds}/paired_tests.json")
    m = res.metrics(ds, "aes_cnn")
    info, best, val = _best_epoch_val_accuracy(res, ds)
    title = res.json(f"{ds}/data_report.json").get("title", ds)
    averaging = m.get("averaging", "")
    lines = [f"**{title}** (`results/{ds}/`)", ""]
    lines.append(f"- Proposed method: accuracy {f3(m['accuracy']['value'])}, recall (sensitivity) "
                 f"{f3(m['recall']['value'])}, specificity {f3(m['specificity']['value'])}, AUC "
                 f"{f3(m['roc_auc']['value'])} ({averaging}); {_training_summary(info, best, val)}.")
    plain = tests.get("plain_cnn")
    if plain:
        if plain["identical_predictions"]:
            same = (f"identical predictions on all {fint(plain['n_paired'])} test images "
                    f"(McNemar p = {fp(plain['p_value'])})")
        else:
            differ = plain["only_proposed_correct"] + plain["only_baseline_correct"]
            same = (f"predictions differ; {fint(differ)} of {fint(plain['n_paired'])} test images are right for one "
                    f"method only (McNemar p = {fp(plain['p_value'])})")
        lines.append(f"- Encrypted (`aes_cnn`) against plaintext (`plain_cnn`) deep CNN: {same}.")
    lossless_file = res.dir / ds / "lossless.json"
    if lossless_file.is_file():
        proof = res.json(f"{ds}/lossless.json")
        verdict = "equal" if proof.get("identical") else "DIFFER FROM"
        lines.append(f"- AES-GCM round trip (`lossless.json`): the {fint(proof['records'])} decrypted records {verdict} "
                     "the preprocessed plaintext arrays bit for bit (SHA-256 of images, labels, ids and splits).")
    others = [(k, t) for k, t in tests.items() if k != "plain_cnn"]
    if others:
        parts = [f"{frame.loc[k, 'Method'] if k in frame.index else k}: {fp(t['p_value'])}" for k, t in others]
        lines.append("- McNemar p against the proposed method: " + "; ".join(parts) + ".")
    enc, dec = _median_seconds(res, ds, "encrypt"), _median_seconds(res, ds, "decrypt")
    aes = (res.paper().get("aes_time_per_image_s") or {})
    vs = ""
    if aes.get("encrypt") and aes.get("decrypt"):
        vs = f": {aes['encrypt'] / enc:,.0f}× / {aes['decrypt'] / dec:,.0f}× faster than the paper's " \
             f"{aes['encrypt'] * 1e3:g} ms / {aes['decrypt'] * 1e3:g} ms"
    lines.append(f"- AES-256-GCM per image (median inside the cipher call, `timing/*.csv`): encrypt {fus(enc)}, "
                 f"decrypt and verify {fus(dec)}{vs}.")
    he_file = res.dir / ds / "metrics/he_linear.json"
    if he_file.is_file():
        he = res.metrics(ds, "he_linear")["he"]
        he_t = frame.loc["he_linear", "Processing time (s)"] if "he_linear" in frame.index else None
        aes_t = frame.loc["aes_cnn", "Processing time (s)"] if "aes_cnn" in frame.index else None
        ratio = f", {he_t / aes_t:,.0f}× the proposed method's" if he_t and aes_t else ""
        lines.append(f"- CKKS: agreement with the plaintext linear model {100 * he['agreement_with_plaintext_model']:.1f}%"
                     f" of test images, max logit error {he['max_abs_logit_error']:.0e}, one "
                     f"{he['ciphertext_bytes_per_image'] / 1e3:,.0f} kB ciphertext per image, server context "
                     f"{he['server_context_bytes'] / 1e6:,.0f} MB; {ftime(he_t)} s per image{ratio}.")
    classical_file = res.dir / ds / "metrics/aes_classical.json"
    if classical_file.is_file():
        c = res.metrics(ds, "aes_classical")
        if c.get("classifier"):
            lines.append(f"- AES + classical features: classifier chosen on validation: `{c['classifier']}`.")
    transfer = [k for k in frame.index if k.endswith("_transfer")]
    for k in transfer:
        t = res.metrics(ds, k).get("transfer", {})
        if t:
            lines.append(f"- {frame.loc[k, 'Method']}: weights `{t.get('weights')}` ({t.get('weights_detail', '')}).")
    return "\n".join(lines) + "\n"


def aes_timing(res: Results, _arg=None) -> str:
    """AES time per image, per dataset: the cipher call (median over records) and the proposed method's parts."""
    paper = res.paper().get("aes_time_per_image_s") or {}
    rows = []
    for ds in res.datasets():
        enc = res.csv(f"{ds}/timing/encrypt.csv")["seconds"]
        dec = res.csv(f"{ds}/timing/decrypt.csv")["seconds"]
        r = res.comparison(ds).set_index("method_key").loc["aes_cnn"]
        rows.append([ds, fint(len(enc)), fus(enc.median()), fus(dec.median()),
                     f"{ftime(r['Processing time (s)'])} [{ftime(r['encrypt (s)'])} / {ftime(r['decrypt (s)'])} / "
                     f"{ftime(r['inference (s)'])}]",
                     (f"{paper['encrypt'] / enc.median():,.0f}× / {paper['decrypt'] / dec.median():,.0f}×"
                      if paper.get("encrypt") and paper.get("decrypt") else "—")])
    head = ["dataset", "records", "encrypt (median)", "decrypt + verify (median)",
            "proposed method, s per test image: total [encrypt / decrypt / inference]", "vs paper (enc. / dec.)"]
    lines = _table(head, rows, "|---|---:|---:|---:|---:|---:|")
    lines += ["", "Cipher times: inside the cipher call, per record, from `results/<dataset>/timing/{encrypt,decrypt}"
                  ".csv` (PyCryptodome engine unless `crypto.engine` says otherwise); the proposed method's time per "
                  "test image from `results/<dataset>/comparison.csv` (means); paper: "
                  f"{paper.get('encrypt', 0) * 1e3:g} ms / {paper.get('decrypt', 0) * 1e3:g} ms."]
    return "\n".join(lines) + "\n"


def pipeline_time(res: Results, _arg=None) -> str:
    """Where the run's time went: Snakemake's benchmark files (wall seconds per job) summed per rule."""
    rows = []
    for tsv in sorted((res.dir / "benchmarks").rglob("*.tsv")):
        rule = tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem
        rows.append({"rule": rule, "seconds": _benchmark_seconds(tsv)})
    if not rows:
        raise DocsError(f"no benchmark files under {res.dir / 'benchmarks'}")
    jobs = pd.DataFrame(rows)
    total = jobs["seconds"].sum()
    per_rule = jobs.groupby("rule")["seconds"].agg(["count", "sum"]).sort_values("sum", ascending=False)
    table = [[f"`{rule}`", str(int(r["count"])), f"{r['sum'] / 60:.1f}", f"{100 * r['sum'] / total:.1f}%"]
             for rule, r in per_rule.iterrows()]
    lines = _table(["rule", "jobs", "minutes", "share"], table, "|---|---:|---:|---:|")
    crypto = per_rule.loc[per_rule.index.intersection(["encrypt", "decrypt"]), "sum"].sum()
    cipher = sum(float(res.csv(f"{ds}/timing/{p}.csv")["seconds"].sum()) for ds in res.datasets()
                 for p in ("encrypt", "decrypt"))
    lines += ["", f"{len(jobs)} jobs, {total / 60:.1f} job-minutes in all (run one after another). Encryption + "
                  f"decryption: {100 * crypto / total:.2f}% of it as the encrypt and decrypt rules' wall time, "
                  f"{100 * cipher / total:.2f}% inside the cipher calls (target ≤ 1%)."]
    n_dec = sum(len(res.csv(f"{ds}/timing/decrypt.csv")) for ds in res.datasets())
    dec_s = sum(float(res.csv(f"{ds}/timing/decrypt.csv")["seconds"].sum()) for ds in res.datasets())
    rates = []
    for ds in res.datasets():
        p = res.dir / ds / "training/aes_cnn_training.json"
        if p.is_file():
            rate = res.json(f"{ds}/training/aes_cnn_training.json").get("train_images_per_second")
            if rate and dec_s:
                rates.append(f"{ds} {rate:,.0f} images/s ({n_dec / dec_s / rate:,.0f}×)")
    if rates and dec_s:
        lines.append(f"Decrypt and verify: {n_dec / dec_s:,.0f} images/s on one core; training consumes "
                     + ", ".join(rates) + " (target ≥ 20×).")
    return "\n".join(lines) + "\n"


def security(res: Results, _arg=None) -> str:
    """Cipher-image statistics of the security_analysis rule, as it wrote them."""
    text = res._need("security/summary.md").read_text()
    return re.sub(r"^# ", "#### ", text, flags=re.M).rstrip("\n") + "\n"


SECURITY_MODES = ("Plain image", "ECB", "GCM, fresh nonce (cryptomed)", "GCM, reused nonce")


def security_table(res: Results, ds: str | None) -> str:
    """Means over the security_analysis sample of one dataset, the modes that tell the story, with pass rates."""
    frame = res.csv("security/summary.csv")
    ds = ds or "chest_xray"
    sub = frame[frame["dataset"] == ds].set_index("mode")
    if sub.empty:
        raise DocsError(f"results/security/summary.csv has no rows for {ds!r}")

    def num(x, digits):
        if _missing(x):
            return "–"
        text = f"{float(x):.{digits}f}"
        return text.lstrip("-") if float(text) == 0 else text.replace("-", "−")

    rows = []
    for mode in [m for m in SECURITY_MODES if m in sub.index]:
        r = sub.loc[mode]
        rows.append([mode, num(r["entropy"], 3), num(r["horizontal"], 3), num(r["vertical"], 3),
                     f"{100 * r['repeated_blocks']:.1f}%", num(r["npcr"], 3), num(r["uaci"], 3),
                     "–" if _missing(r["npcr_pass_rate"]) else f"{100 * r['npcr_pass_rate']:.0f}% / "
                                                           f"{100 * r['uaci_pass_rate']:.0f}%"])
    n = int(sub["images"].max())
    lines = [f"Means over {n} test images of {ds} (`results/security/summary.csv`):", ""]
    lines += _table(["mode", "entropy (bits)", "corr. horizontal", "corr. vertical", "repeated 16-byte blocks",
                     "NPCR %", "UACI %", "NPCR / UACI pass"], rows, "|---|---:|---:|---:|---:|---:|---:|---:|")
    return "\n".join(lines) + "\n"


def leakage(res: Results, ds: str | None) -> str:
    """What preprocess removed as copies of test images (by kind and class), the grouping of train/validation and
    the leakage check measured on the final splits (``near_copies`` and ``patients`` in the data report)."""
    if not ds:
        raise DocsError("leakage needs a dataset: leakage:<dataset>")
    report = res.json(f"{ds}/data_report.json")
    near, patients = report.get("near_copies"), report.get("patients") or {}
    if not near:
        raise DocsError(f"results/{ds}/data_report.json has no near_copies section: rerun preprocess")
    dropped = near["train_copies_of_test_dropped"]
    classes = list(report["classes"])
    rows = [[kind.replace("_", " "), *(fint(dropped["by_kind_and_class"][kind][c]) for c in classes),
             fint(dropped["by_kind"][kind])] for kind in ("exact", "near", "flipped_or_rotated")]
    rows.append(["**total**", *(fint(dropped["by_class"][c]) for c in classes), f"**{fint(dropped['total'])}**"])
    check = near["check"]
    lines = [f"Training images dropped as copies of a test image (`results/{ds}/data_report.json`, threshold "
             f"{near['threshold']}, {near['thumbnail']}-px thumbnails):", ""]
    lines += _table(["kind", *classes, "all"], rows, "|---|" + "---:|" * (len(classes) + 1))
    lines += ["", f"- {fint(near['test_images_with_a_train_copy'])} of {fint(report['counts']['test']['total'])} test "
                  f"images had at least one copy in the official training split; the test split is kept whole.",
              f"- Inside train + validation, {fint(near['train_val_near_copy_pairs'])} near-copy pairs form "
              f"{fint(near['train_val_near_copy_groups'])} groups ({fint(near['train_val_images_in_near_copy_groups'])} "
              "images), each kept on one side of the validation split.",
              f"- Kept although close: {fint(near['borderline_kept']['train_images'])} training images lie just above "
              "the threshold (up to 1.5 times it) from their nearest test image.",
              f"- Measured on the final splits: {fint(check['test_images_with_a_copy_in_train_or_val'])} test images "
              f"with a copy in train or validation, {fint(check['val_images_with_a_copy_in_train'])} validation images "
              f"with one in train, {fint(check['patients_in_train_and_val'])} patients in both train and validation."]
    if patients.get("id_source"):
        lines.append(f"- Patients (ids from the upstream file names, used inside preprocess only): "
                     f"{fint(patients['train_val_patients'])} in train + validation; "
                     f"{fint(patients['official_train_test_patients_shared'])} patient ids occur in both the "
                     "official train and test splits (reported, not repaired: the official test split is kept).")
    return "\n".join(lines) + "\n"


def tuning(res: Results, arg: str | None) -> str:
    """The recipe search record (``results/tuning/tuning.csv``; ``tuning:NAME``: ``results/tuning/NAME/tuning.csv``,
    a search on another validation split): validation scores only, with cost and machine."""
    frame = res.csv(f"tuning/{arg}/tuning.csv" if arg else "tuning/tuning.csv")
    rows = []
    for _, r in frame.iterrows():
        size = r.get("image_size")
        rows.append([r["dataset"], "64" if size is None or size != size else str(int(size)), r["candidate"],
                     str(int(r["seed"])), f3(r["val_accuracy"]),
                     f3(r["val_balanced_accuracy"]), f3(r["val_roc_auc"]), f3(r["val_loss"]), str(int(r["epochs_run"])),
                     f"{float(r['train_seconds']):.0f}", fint(r["images_per_second"]), str(r["device"])])
    lines = _table(["dataset", "px", "candidate", "seed", "val accuracy", "val balanced acc.", "val ROC-AUC",
                    "val loss", "epochs", "train s", "img/s", "machine"], rows,
                   "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    return "\n".join(lines) + "\n"


def tuning_transfer(res: Results, arg: str | None) -> str:
    """The EfficientNet-Lite0 feature/head search (``results/tuning/transfer.csv``): validation scores only; per
    dataset, input size and taps the row of the C with the lowest validation loss."""
    frame = res.csv("tuning/transfer.csv")
    frame = frame.loc[frame.groupby(["dataset", "image_size", "taps"], sort=False)["val_loss"].idxmin()]
    rows = [[r["dataset"], str(int(r["image_size"])), r["taps"], str(int(r["features"])), f"{float(r['C']):g}",
             f3(r["val_accuracy"]), f3(r["val_balanced_accuracy"]), f3(r["val_roc_auc"]), f3(r["val_loss"]),
             fint(r["feature_images_per_second"]), str(r["device"])] for _, r in frame.iterrows()]
    lines = _table(["dataset", "px", "features from", "length", "C", "val accuracy", "val balanced acc.",
                    "val ROC-AUC", "val loss", "img/s", "machine"], rows,
                   "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    return "\n".join(lines) + "\n"


def tuning_ensemble(res: Results, arg: str | None) -> str:
    """The ensemble check (``results/tuning/ensemble.csv``, benchmarks/tune_ensemble.py): validation scores of the
    two members and of their probability mean."""
    frame = res.csv("tuning/ensemble.csv")
    rows = [[r["dataset"], r["method"], f3(r["val_accuracy"]), f3(r["val_balanced_accuracy"]), f3(r["val_roc_auc"]),
             f3(r["val_loss"]), str(int(r["val_images"])), str(r["device"])] for _, r in frame.iterrows()]
    lines = _table(["dataset", "method", "val accuracy", "val balanced acc.", "val ROC-AUC", "val loss",
                    "val images", "machine"], rows, "|---|---|---:|---:|---:|---:|---:|---|")
    return "\n".join(lines) + "\n"


def tuning_seed_ensemble(res: Results, arg: str | None) -> str:
    """Seed ensembles and flip test-time augmentation (``results/tuning/seed_ensemble.csv``,
    benchmarks/tune_seed_ensemble.py): validation scores of every member alone and of each candidate's mean."""
    frame = res.csv("tuning/seed_ensemble.csv")
    rows = [[r["dataset"], str(int(r["image_size"])), r["candidate"], str(r["seeds"]),
             "yes" if str(r["flip_tta"]) == "True" else "no", f3(r["val_accuracy"]), f3(r["val_balanced_accuracy"]),
             f3(r["val_roc_auc"]), f3(r["val_loss"]), f"{float(r['train_seconds']):.0f}", str(r["device"])]
            for _, r in frame.iterrows()]
    lines = _table(["dataset", "px", "candidate", "seeds (mean of)", "flip", "val accuracy", "val balanced acc.",
                    "val ROC-AUC", "val loss", "train s (sum)", "machine"], rows,
                   "|---|---:|---|---|---|---:|---:|---:|---:|---:|---|")
    return "\n".join(lines) + "\n"


def _shift_table(res: Results, ds: str) -> tuple[dict, list[str]]:
    """The domain classifier's numbers of a test-like split (``results/tuning/testlike/shift_<dataset>.json``)."""
    shift = res.json(f"tuning/testlike/shift_{ds}.json")
    lines = _table(["domain classifier ROC-AUC (0.5 = no shift)", "value"], [
        ["official training vs test images", f3(shift["domain_auc_train_vs_test"])],
        ["random validation split vs test", f3(shift["domain_auc_old_val_vs_test"])],
        ["test-like validation split vs test", f3(shift["domain_auc_new_val_vs_test"])],
    ], "|---|---:|")
    lines += ["", f"The test-like split has {fint(shift['n_val'])} images, {fint(shift['overlap_with_old_val'])} of them "
              "in the random one.", ""]
    return shift, lines


def tuning_testlike(res: Results, arg: str | None) -> str:
    """The test-like validation split of chest X-ray (``results/tuning/testlike/``, benchmarks/shift_validation.py):
    the shift the domain classifier measures, and each candidate's mean over seeds of the two decision rules."""
    shift, lines = _shift_table(res, "chest_xray")
    full = res.json("chest_xray/data_report.json")
    val = full.get("validation", {})
    if not val.get("method", "").startswith("test_like"):
        raise DocsError("results/chest_xray/data_report.json: the full run did not use the test-like validation split")
    lines += [f"The full run's chest X-ray split (`results/chest_xray/data_report.json`): {fint(full['counts']['val']['total'])} "
              f"validation images, domain classifier ROC-AUC {f3(val['domain_auc_train_vs_test'])} (the benchmark: "
              f"{fint(shift['n_val'])} and {f3(shift['domain_auc_train_vs_test'])}).", ""]
    rows = []
    for ds, rel, split in (("chest_xray", "tuning/testlike/tuning.csv", "test-like"),
                           ("brain_mri", "tuning/tuning.csv", "random")):
        frame = res.csv(rel)
        for cand in ("J_stride2_long", "K_J_strong"):
            sel = frame[(frame["dataset"] == ds) & (frame["candidate"] == cand) & frame["seed"].isin([42, 43])
                        & (frame["image_size"] == 64)]
            if len(sel) != 2:
                raise DocsError(f"{rel}: {ds} {cand} needs seeds 42 and 43 at 64 px, found {len(sel)} rows")
            rows.append([ds, split, cand, f3(sel["val_accuracy"].mean()), f3(sel["val_roc_auc"].mean()),
                         f3(sel["val_loss"].mean())])
    lines += _table(["dataset", "validation split", "candidate", "mean val accuracy", "mean val ROC-AUC",
                     "mean val loss"], rows, "|---|---|---|---:|---:|---:|")
    lines += ["", "Means over seeds 42 and 43."]
    return "\n".join(lines) + "\n"


def tuning_adapt(res: Results, arg: str | None) -> str:
    """The batch-norm adaptation check (``results/tuning/adapt/<dataset>.csv``, benchmarks/adapt_validation.py):
    validation without and with adaptation to the validation images, and the rule's verdict per dataset (the mean
    over the seeds lowers the validation loss and keeps the validation accuracy)."""
    rows, verdicts = [], []
    for ds in res.datasets():
        frame = res.csv(f"tuning/adapt/{ds}.csv")
        for _, r in frame.iterrows():
            spec = r.get("val_specificity")
            rows.append([ds, str(int(r["seed"])), "yes" if r["adapted"] else "no", f3(r["val_accuracy"]),
                         f3(r["val_balanced_accuracy"]), f3(r["val_roc_auc"]), f3(r["val_loss"]),
                         "" if spec is None or spec != spec else f3(spec), str(r["machine"])])
        pairs = sorted(zip(frame["seed"].astype(int), frame["adapted"].astype(bool)))
        if pairs != [(42, False), (42, True), (43, False), (43, True)]:  # the rule's seeds, once each way
            raise DocsError(f"results/tuning/adapt/{ds}.csv: needs seeds 42 and 43, each once without and once "
                            f"with adaptation; found {pairs}")
        mean = frame.groupby("adapted")[["val_accuracy", "val_loss"]].mean()
        adopt = mean.loc[True, "val_loss"] < mean.loc[False, "val_loss"] and \
            mean.loc[True, "val_accuracy"] >= mean.loc[False, "val_accuracy"]
        verdicts.append(f"- {ds}: mean validation loss {f3(mean.loc[False, 'val_loss'])} → "
                        f"{f3(mean.loc[True, 'val_loss'])}, accuracy {f3(mean.loc[False, 'val_accuracy'])} → "
                        f"{f3(mean.loc[True, 'val_accuracy'])}: **{'adopted' if adopt else 'not adopted'}**.")
    lines = _table(["dataset", "seed", "adapted", "val accuracy", "val balanced acc.", "val ROC-AUC", "val loss",
                    "val specificity", "machine"], rows, "|---|---:|---|---:|---:|---:|---:|---:|---|")
    lines += ["", "By the rule:", ""] + verdicts
    mix_file = res.dir / "tuning/adapt/class_mix_brain_mri.csv"
    if mix_file.exists():  # the later diagnostic (benchmarks/adapt_class_mix.py), no choice depends on it
        mix = res.csv("tuning/adapt/class_mix_brain_mri.csv")
        table = mix.groupby("mix", sort=False).agg(draws=("repeat", "size"), images=("images", "first"),
                                                   accuracy=("accuracy", "mean"),
                                                   adapted=("accuracy_adapted", "mean"))
        lines += ["", "Diagnostic, after the full run (`results/tuning/adapt/class_mix_brain_mri.csv`): the full run's "
                  "brain MRI network adapted to validation subsets drawn at other class mixes, mean accuracy on "
                  "the same subsets:", ""]
        lines += _table(["class mix", "draws", "images each", "without adaptation", "adapted"],
                        [[name, str(int(r["draws"])), str(int(r["images"])), f3(r["accuracy"]), f3(r["adapted"])]
                         for name, r in table.iterrows()], "|---|---:|---:|---:|---:|")
    return "\n".join(lines) + "\n"


def tuning_testlike_brain(res: Results, arg: str | None) -> str:
    """A diagnostic, no choice depends on it: the test-like validation split built for brain MRI
    (``results/tuning/testlike/shift_brain_mri.json``) and the batch-norm adaptation scored on it
    (``results/tuning/adapt/testlike_brain_mri.csv``, networks trained on that split's training part)."""
    _, lines = _shift_table(res, "brain_mri")
    frame = res.csv("tuning/adapt/testlike_brain_mri.csv")
    rows = [[str(int(r["seed"])), "yes" if r["adapted"] else "no", f3(r["val_accuracy"]), f3(r["val_balanced_accuracy"]),
             f3(r["val_roc_auc"]), f3(r["val_loss"]), str(r["machine"])] for _, r in frame.iterrows()]
    lines += _table(["seed", "adapted", "val accuracy", "val balanced acc.", "val ROC-AUC", "val loss", "machine"],
                    rows, "|---:|---|---:|---:|---:|---:|---|")
    mean = frame.groupby("adapted")[["val_accuracy", "val_loss"]].mean()
    adopt = mean.loc[True, "val_loss"] < mean.loc[False, "val_loss"] and \
        mean.loc[True, "val_accuracy"] >= mean.loc[False, "val_accuracy"]
    lines += ["", f"Read as the adaptation rule reads validation: mean loss {f3(mean.loc[False, 'val_loss'])} → "
              f"{f3(mean.loc[True, 'val_loss'])}, accuracy {f3(mean.loc[False, 'val_accuracy'])} → "
              f"{f3(mean.loc[True, 'val_accuracy'])}: it would {'adopt' if adopt else 'not adopt'} the adaptation."]
    return "\n".join(lines) + "\n"


def subgroups(res: Results, ds: str | None) -> str:
    """Test accuracy per class and image source (``results/<dataset>/subgroups.csv``, benchmarks/subgroups.py): a
    diagnostic of where the errors are, with the training images each group kept and lost as copies of test."""
    if not ds:
        raise DocsError("subgroups needs a dataset: subgroups:<dataset>")
    frame = res.csv(f"{ds}/subgroups.csv")
    methods = [c.removeprefix("accuracy_") for c in frame.columns if c.startswith("accuracy_")]
    short = {"aes_cnn": "proposed CNN", "shallow_cnn": "shallow CNN", "aes_classical": "classical",
             "he_linear": "CKKS", "efficientnet_lite0_transfer": "EfficientNet-Lite0", "ensemble": "ensemble"}
    rows = [[r["class_name"], r["source"], fint(r["test_images"]), fint(r["train_val_kept"]),
             fint(r["dropped_as_copy_of_test"]), *(f3(r[f"accuracy_{m}"]) for m in methods)]
            for _, r in frame.iterrows()]
    lines = _table(["class", "original image", "test images", "train + val kept", "dropped as copies of test",
                    *(short.get(m, m) for m in methods)], rows, "|---|---|---:|---:|---:|" + "---:|" * len(methods))
    if "accuracy_aes_cnn" in frame.columns:
        errors = frame["test_images"] * (1 - frame["accuracy_aes_cnn"])
        thin = frame["train_val_kept"] < frame["test_images"]  # fewer training images kept than test images
        lines += ["", f"Groups with fewer training and validation images kept than test images hold "
                  f"{fint(round(errors[thin].sum()))} of the proposed CNN's {fint(round(errors.sum()))} test errors, "
                  f"on {fint(frame.loc[thin, 'test_images'].sum())} of the {fint(frame['test_images'].sum())} test "
                  f"images."]
    return "\n".join(lines) + "\n"


def tuning_native(res: Results, arg: str | None) -> str:
    """The transfer baseline's input check (``results/tuning/native_input.csv``, benchmarks/tune_native_input.py):
    validation scores of every C for the upsampled arrays and the source images, and the rule's verdict per
    dataset (at each input's C of lowest validation loss: native lowers the loss and keeps the accuracy)."""
    frame = res.csv("tuning/native_input.csv")
    rows, verdicts = [], []
    for ds, part in frame.groupby("dataset", sort=False):
        best = {}
        for source in ("upsampled", "native"):
            arm = part[part["input"] == source]
            if arm.empty:
                raise DocsError(f"results/tuning/native_input.csv: {ds} has no {source} rows")
            best[source] = arm.loc[arm["val_loss"].idxmin()]
            for _, r in arm.iterrows():
                mark = "**" if r.name == best[source].name else ""
                rows.append([ds, str(int(r["image_size"])), source, f"{float(r['C']):g}", f3(r["val_accuracy"]),
                             f3(r["val_balanced_accuracy"]), f3(r["val_roc_auc"]), f"{mark}{f3(r['val_loss'])}{mark}",
                             str(r["device"])])
        up, nat = best["upsampled"], best["native"]
        adopt = nat["val_loss"] < up["val_loss"] and nat["val_accuracy"] >= up["val_accuracy"]
        verdicts.append(f"- {ds}: validation loss {f3(up['val_loss'])} → {f3(nat['val_loss'])}, accuracy "
                        f"{f3(up['val_accuracy'])} → {f3(nat['val_accuracy'])} (each at its C of lowest loss, in "
                        f"bold): **{'adopted' if adopt else 'not adopted'}**.")
    lines = _table(["dataset", "px", "input", "C", "val accuracy", "val balanced acc.", "val ROC-AUC", "val loss",
                    "machine"], rows, "|---|---:|---|---:|---:|---:|---:|---:|---|")
    lines += ["", "By the rule:", ""] + verdicts
    return "\n".join(lines) + "\n"


FINETUNE_BUDGET_S = 9 * 60  # the fine-tuning and LP-FT rules as written: between the full run of their day (31.0 min)
# and the 40-minute budget (docs/tuning.md); a new rule states its own budget (the default run took 23.9 min since)


def _rule_decisions(frame: pd.DataFrame, arms: tuple[str, ...], name: str, budget_s: float | None) -> dict:
    """The shared core of the fine-tuning and LP-FT rules (docs/tuning.md) on a tuning CSV's rows: per dataset, each
    candidate arm against the frozen head at its C of lowest validation loss by
    :func:`cryptomed.transfer.finetune_kept`; of those passing, the lower validation loss is adopted, provided the
    passing datasets' training (the first arm's ``train_seconds``) fits ``budget_s`` together (None: no time
    condition). Returns {dataset: (frozen row, [(candidate row, passes)], adopted arm or None, training seconds of
    the passing datasets when over the budget else None)}."""
    from .transfer import finetune_kept

    judged = {}
    for ds, part in frame.groupby("dataset", sort=False):
        frozen = part[part["arm"] == "frozen"]
        candidates = [part[part["arm"] == arm] for arm in arms]
        if frozen.empty or any(c.empty for c in candidates):
            names = ["frozen", *arms]
            raise DocsError(f"results/tuning/{name}: {ds} needs {', '.join(names[:-1])} and {names[-1]} rows")
        best = frozen.loc[frozen["val_loss"].idxmin()]
        rows = [(c.iloc[0], finetune_kept(best["val_loss"], best["val_accuracy"], c.iloc[0]["val_loss"],
                                          c.iloc[0]["val_accuracy"])) for c in candidates]
        passing = [r for r, ok in rows if ok]
        judged[ds] = (best, rows, min(passing, key=lambda r: r["val_loss"])["arm"] if passing else None)
    seconds = sum(rows[0][0]["train_seconds"] for _, rows, arm in judged.values() if arm)
    over = seconds if budget_s is not None and seconds > budget_s else None
    return {ds: (best, rows, arm if over is None else None, over if arm else None)
            for ds, (best, rows, arm) in judged.items()}


def finetune_decisions(frame: pd.DataFrame, budget_s: float | None = FINETUNE_BUDGET_S) -> dict:
    """The fine-tuning rule (docs/tuning.md) on ``results/tuning/finetune.csv``'s rows: per dataset (the frozen
    head's row at its C of lowest validation loss, the fine-tuned row, adopted, training seconds of the passing
    datasets when over ``budget_s`` else None), by :func:`_rule_decisions` with the one arm ``finetune`` (``budget_s``
    None: no time condition, as the pipeline's choice in the GPU configurations)."""
    return {ds: (best, rows[0][0], arm is not None, over)
            for ds, (best, rows, arm, over) in _rule_decisions(frame, ("finetune",), "finetune.csv", budget_s).items()}


def lpft_decisions(frame: pd.DataFrame, budget_s: float | None = FINETUNE_BUDGET_S) -> dict:
    """The LP-FT rule (docs/tuning.md) on ``results/tuning/lpft.csv``'s rows: :func:`_rule_decisions` with the arms
    ``lpft`` and ``lpft_average`` (the average's training is the ``lpft`` top's)."""
    return _rule_decisions(frame, ("lpft", "lpft_average"), "lpft.csv", budget_s)


def _tuning_row(ds: str, r, how: str, bold: bool) -> list[str]:
    """A row of the fine-tuning and LP-FT tables: dataset, input size, arm, ``how``, validation scores (the loss in
    bold where the rule compared it) and the machine."""
    mark = "**" if bold else ""
    return [ds, str(int(r["image_size"])), r["arm"], how, f3(r["val_accuracy"]), f3(r["val_balanced_accuracy"]),
            f3(r["val_roc_auc"]), f"{mark}{f3(r['val_loss'])}{mark}", str(r["device"])]


TUNING_HEAD = ["dataset", "px", "arm", "setting", "val accuracy", "val balanced acc.", "val ROC-AUC", "val loss",
               "machine"]
TUNING_ALIGN = "|---|---:|---|---|---:|---:|---:|---:|---|"


def tuning_finetune(res: Results, arg: str | None) -> str:
    """Fine-tuning the transfer backbone's top (``results/tuning/finetune.csv``, benchmarks/tune_finetune.py): the
    frozen head at every C and the fine-tuned top, on validation, and the rule's verdict per dataset
    (:func:`finetune_decisions`). ``tuning-finetune:images`` (``results/tuning/finetune_images.csv``): the GPU
    configurations' fine-tuning on the images instead, judged as the pipeline judges it (no time condition)."""
    images = arg == "images"
    frame = res.csv("tuning/finetune_images.csv" if images else "tuning/finetune.csv")
    if images:
        frame = frame.assign(arm=frame["arm"].replace({"finetune_images": "finetune"}))
    decisions = finetune_decisions(frame, None if images else FINETUNE_BUDGET_S)
    rows = []
    for ds, part in frame.groupby("dataset", sort=False):
        best, ft = decisions[ds][:2]
        for _, r in part.iterrows():
            how = (f"C = {float(r['C']):g}" if r["arm"] == "frozen" else
                   f"{int(r['epochs_run'])} epochs (best {int(r['best_epoch'])}), {fint(round(r['train_seconds']))} s")
            rows.append(_tuning_row(ds, r, how, r.name in (best.name, ft.name)))
    verdicts = [f"- {ds}: validation loss {f3(best['val_loss'])} (frozen) → {f3(ft['val_loss'])} (fine-tuned), "
                f"accuracy {f3(best['val_accuracy'])} → {f3(ft['val_accuracy'])}: **"
                + ({True: "kept", False: "not kept"} if images else {True: "adopted", False: "not adopted"})[adopted]
                + "**"
                + (f" (training {fint(round(over))} s over the {FINETUNE_BUDGET_S // 60}-minute budget)"
                   if over is not None else "") + "."
                for ds, (best, ft, adopted, over) in decisions.items()]
    lines = _table(TUNING_HEAD, rows, TUNING_ALIGN)
    lines += ["", "By the rule (the frozen head at its C of lowest loss; both compared rows in bold)"
              + (", as the pipeline applies it to the fine-tuned network (no time condition):" if images else ":"),
              ""] + verdicts
    return "\n".join(lines) + "\n"


def tuning_lpft(res: Results, arg: str | None) -> str:
    """LP-FT (``results/tuning/lpft.csv``, ``benchmarks/tune_finetune.py --arm lpft``): the frozen head at every C,
    the top started from the linear probe and its mean with the frozen head, on validation, and the rule's verdict
    per dataset (:func:`lpft_decisions`)."""
    frame = res.csv("tuning/lpft.csv")
    decisions = lpft_decisions(frame)
    rows, verdicts = [], []
    for ds, part in frame.groupby("dataset", sort=False):
        best, judged, adopted, over = decisions[ds]
        for _, r in part.iterrows():
            if r["arm"] == "lpft":
                probe = re.search(r"probe_C=(\S+)", str(r["recipe"]))
                if not probe:
                    raise DocsError(f"results/tuning/lpft.csv: {ds}'s lpft row has no probe_C in its recipe "
                                    "(rerun benchmarks/tune_finetune.py --arm lpft)")
                how = (f"{int(r['epochs_run'])} epochs (best {int(r['best_epoch'])}), "
                       f"{fint(round(r['train_seconds']))} s; probe C = {probe.group(1)}")
            else:
                how = ("C = " if r["arm"] == "frozen" else "mean with frozen C = ") + f"{float(r['C']):g}"
            rows.append(_tuning_row(ds, r, how, r.name == best.name or r["arm"] != "frozen"))
        verdicts.append(f"- {ds}: frozen head (C = {float(best['C']):g}) validation loss {f3(best['val_loss'])}, "
                        f"accuracy {f3(best['val_accuracy'])}; "
                        + "; ".join(f"{r['arm']} {f3(r['val_loss'])}, {f3(r['val_accuracy'])} "
                                    f"({'passes' if ok else 'does not pass'})" for r, ok in judged)
                        + f": **{'adopted: ' + adopted if adopted else 'nothing adopted'}**"
                        + (f" (training {fint(round(over))} s over the {FINETUNE_BUDGET_S // 60}-minute budget)"
                           if over is not None else "") + ".")
    lines = _table(TUNING_HEAD, rows, TUNING_ALIGN)
    lines += ["", "By the rule (each candidate against the frozen head at its C of lowest loss; compared rows in "
              "bold; loss and accuracy):", ""] + verdicts
    return "\n".join(lines) + "\n"


ASPECT_RULE = ("J_stride2_long", "L_J_aspect", 1.5)  # (default recipe, candidate, most training time, x default)
ASPECT_SEEDS = (42, 43)  # the seeds the rule names


def aspect_decision(frame: pd.DataFrame) -> dict:
    """The aspect-ratio jitter rule (docs/tuning.md) on ``results/tuning/aspect/tuning.csv``: per candidate the
    means over its seeds (chest X-ray) and whether the candidate is adopted: lower mean validation loss, mean
    accuracy not lower, mean training time at most 1.5 times the default's, over the seeds the rule names."""
    base, cand, most = ASPECT_RULE
    chest = frame[frame["dataset"] == "chest_xray"]
    seeds = list(ASPECT_SEEDS)
    for name in (base, cand):
        missing = set(seeds) - set(chest.loc[chest["candidate"] == name, "seed"])
        if missing:
            raise DocsError(f"results/tuning/aspect/tuning.csv: {name} lacks seed(s) {sorted(missing)} of the rule")
    means = {name: chest[(chest["candidate"] == name) & chest["seed"].isin(seeds)][
        ["val_accuracy", "val_loss", "train_seconds"]].mean() for name in (base, cand)}
    adopted = bool(means[cand]["val_loss"] < means[base]["val_loss"]
                   and means[cand]["val_accuracy"] >= means[base]["val_accuracy"]
                   and means[cand]["train_seconds"] <= most * means[base]["train_seconds"])
    return {"seeds": seeds, "means": means, "adopted": adopted}


def tuning_aspect(res: Results, arg: str | None) -> str:
    """Aspect-ratio jitter on chest X-ray (``results/tuning/aspect/tuning.csv``): every run and the rule's verdict
    (:func:`aspect_decision`)."""
    decision = aspect_decision(res.csv("tuning/aspect/tuning.csv"))
    base, cand, _ = ASPECT_RULE
    b, c = decision["means"][base], decision["means"][cand]
    seeds = " and ".join(str(int(s)) for s in decision["seeds"])
    return (tuning(res, "aspect") + f"\nBy the rule (means over seeds {seeds}): validation loss {f3(b['val_loss'])} "
            f"(`{base}`) → {f3(c['val_loss'])} (`{cand}`), accuracy {f3(b['val_accuracy'])} → "
            f"{f3(c['val_accuracy'])}, training {fint(round(b['train_seconds']))} s → "
            f"{fint(round(c['train_seconds']))} s: **" + ("adopted" if decision["adopted"] else "not adopted")
            + "**.\n")


DISTILL_SEEDS = "42, 43, 44"  # the rule's seeds: each arm's mean of these networks is compared


def distill_decision(frame: pd.DataFrame) -> dict:
    """The distillation rule (docs/tuning.md) on ``results/tuning/distill.csv``: on brain MRI, the mean of
    ``distill``'s three networks against the default recipe's; adopted if its validation loss is lower and its
    accuracy not lower."""
    brain = frame[frame["dataset"] == "brain_mri"]
    means = {}
    for arm in ("default", "distill"):
        row = brain[(brain["arm"] == arm) & (brain["setting"] == f"mean of seeds {DISTILL_SEEDS}")]
        if len(row) != 1:
            raise DocsError(f"results/tuning/distill.csv: brain_mri has {len(row)} rows 'mean of seeds "
                            f"{DISTILL_SEEDS}' for {arm} (the rule compares one per arm)")
        means[arm] = row.iloc[0]
    d, c = means["default"], means["distill"]
    return {"means": means, "adopted": bool(c["val_loss"] < d["val_loss"] and c["val_accuracy"] >= d["val_accuracy"])}


def tuning_distill(res: Results, arg: str | None) -> str:
    """Distillation from the transfer baseline (``results/tuning/distill.csv``, benchmarks/tune_distill.py): the
    teacher at every C, every network of both arms and each arm's mean, on validation, and the rule's verdict
    (:func:`distill_decision`)."""
    frame = res.csv("tuning/distill.csv")
    decision = distill_decision(frame)
    rows = [[r["dataset"], r["arm"], str(r["setting"]), f3(r["val_accuracy"]), f3(r["val_balanced_accuracy"]),
             f3(r["val_roc_auc"]), f3(r["val_loss"]), "" if pd.isna(r["epochs_run"]) else str(int(r["epochs_run"])),
             "" if pd.isna(r["train_seconds"]) else fint(round(r["train_seconds"])), str(r["device"])]
            for _, r in frame.iterrows()]
    lines = _table(["dataset", "arm", "setting", "val accuracy", "val balanced acc.", "val ROC-AUC", "val loss",
                    "epochs", "train s", "machine"], rows, "|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    d, c = decision["means"]["default"], decision["means"]["distill"]
    lines += ["", f"By the rule (brain MRI, each arm's mean of seeds {DISTILL_SEEDS}): validation loss "
              f"{f3(d['val_loss'])} (default) → {f3(c['val_loss'])} (distill), accuracy {f3(d['val_accuracy'])} → "
              f"{f3(c['val_accuracy'])}: **" + ("adopted" if decision["adopted"] else "not adopted") + "**."]
    return "\n".join(lines) + "\n"


def _machine(prov: dict) -> str:
    """"2-core AMD EPYC CPU, tensorflow, 2 threads" from a metrics file's provenance (the threads TensorFlow ran
    with where they differ from the request)."""
    cpu = prov.get("cpu") or {}
    threads = prov.get("threads_in_effect", prov.get("threads"))
    return (f"{cpu.get('logical_cpus', '?')}-core {cpu.get('model_name') or cpu.get('model') or 'CPU'} CPU, "
            f"{prov.get('backend') or 'backend not recorded'}"
            + (f", {threads} threads" if threads else ", default threads"))


FINETUNE_CPU = "finetune_cpu"  # results/finetune_cpu/<dataset>/: the run of config/finetune.yaml (docs/tuning.md)
# ... and in <dataset>/default_run/ the files of the default run it was compared with (9c86538's, before LP-FT)
FINETUNE_BASE = "default_run"


def _finetune_runs(res: Results) -> list[str]:
    datasets = [d for d in DATASET_ORDER if (res.dir / FINETUNE_CPU / d).is_dir()]
    if not datasets:
        raise DocsError(f"{res.dir / FINETUNE_CPU} holds no dataset: run config/finetune.yaml (docs/tuning.md)")
    return datasets


def _finetune_record(res: Results, ds: str) -> dict:
    rel = f"{FINETUNE_CPU}/{ds}/metrics/efficientnet_lite0_transfer.json"
    record = res.json(rel).get("transfer", {}).get("finetune")
    if not record:
        raise DocsError(f"{res.dir / rel}: no transfer.finetune record: not a run with fine-tuning")
    return record


def _rule_seconds(res: Results, ds: str) -> float:
    """Wall seconds of the finetune_efficientnet job (Snakemake's benchmark file, copied beside the results)."""
    return _benchmark_seconds(res._need(f"{FINETUNE_CPU}/{ds}/benchmarks/finetune_efficientnet.tsv"))


def finetune_cpu(res: Results, _arg=None) -> str:
    """The run of ``config/finetune.yaml`` (``results/finetune_cpu/<dataset>/``) beside the default run it ran with
    (its files in ``<dataset>/default_run/``): per dataset the validation rule's record (frozen head against
    fine-tuned network), the network kept, and :func:`_runs_compared`'s test rows."""
    rows, notes = [], []
    for ds in _finetune_runs(res):
        ft = _finetune_record(res, ds)
        size = res.json(f"{FINETUNE_CPU}/{ds}/metrics/efficientnet_lite0_transfer.json")["transfer"]["image_size"]
        rows += _runs_compared(res, ds, f"{FINETUNE_CPU}/{ds}/{FINETUNE_BASE}/", f"{FINETUNE_CPU}/{ds}/")
        training = res.json(f"{FINETUNE_CPU}/{ds}/training/efficientnet_lite0_finetune.json")
        notes.append(f"- {ds} ({size} px): the fine-tuned network ran {ft['epochs_run']} epochs (best "
                     f"{ft['best_epoch']}) in {fint(round(ft['train_seconds']))} s of training "
                     f"({fint(round(_rule_seconds(res, ds)))} s for the whole job); validation loss "
                     f"{f3(ft['validation_loss_frozen_head'])} (frozen head, C = {ft['frozen_head_C_lowest_loss']:g}) "
                     f"→ {f3(ft['validation_loss_fine_tuned'])} (fine-tuned), accuracy "
                     f"{f3(ft['validation_accuracy_frozen_head'])} → {f3(ft['validation_accuracy_fine_tuned'])}: "
                     f"**{'fine-tuned network kept' if ft['chosen'] == 'fine_tuned' else 'frozen head kept'}**"
                     f" ({_machine(training['provenance'])}).")
    lines = ["Validation, by the pipeline's rule:", "", *notes, "",
             "Test, evaluated once (default run → this run; accuracy with its 95% CI; McNemar: p (only the first / "
             "only the second correct), against the proposed CNN of the same run, and between the two runs' "
             "transfer rows, default run first):", ""]
    lines += _table(["dataset", "row", "accuracy", "ROC-AUC", "specificity", "McNemar: proposed CNN vs this row",
                     "McNemar: default run vs this run"], rows, "|---|---|---|---|---|---|---|")
    return "\n".join(lines) + "\n"


TRANSFER_ROWS = (("efficientnet_lite0_transfer", "transfer"), ("ensemble", "ensemble"))


def _runs_compared(res: Results, ds: str, base: str, new: str, methods=TRANSFER_ROWS,
                   between: tuple[str, ...] = ("efficientnet_lite0_transfer",)) -> list[list[str]]:
    """Table rows of ``methods`` ((method, label) pairs) in two runs of ``ds`` (folders ``base`` and ``new`` under
    results/, each with metrics/, paired_tests.json and predictions/): test accuracy with its CI, ROC-AUC and
    specificity in both, McNemar's test against the proposed CNN in each and, for the methods in ``between``, between
    the two runs' rows (records matched by id, labels checked)."""
    rows = []
    for method, label in methods:
        old, now = (res.json(f"{run}metrics/{method}.json") for run in (base, new))
        vs = "(reference)" if method == "aes_cnn" else " → ".join(
            f"{fp(t['p_value'])} ({t['only_proposed_correct']} / {t['only_baseline_correct']})"
            for t in (res.json(f"{run}paired_tests.json")[method] for run in (base, new)))
        rows.append([ds, label, f"{f3(old['accuracy']['value'])} → **{f3(now['accuracy']['value'])}** "
                     f"[{f3(now['accuracy']['ci95'][0])}, {f3(now['accuracy']['ci95'][1])}]",
                     f"{f3(old['roc_auc']['value'])} → {f3(now['roc_auc']['value'])}",
                     f"{f3(old['specificity']['value'])} → {f3(now['specificity']['value'])}",
                     vs,
                     _between_runs(res, base, new, method) if method in between else ""])
    return rows


def _between_runs(res: Results, base: str, new: str, method: str) -> str:
    """McNemar's test between two runs' predictions of ``method``: p (only the first / only the second correct)."""
    from .reporting import mcnemar

    where = f"{res.dir / new}predictions/{method}.csv"
    a, b = (pd.read_csv(res._need(f"{run}predictions/{method}.csv"), dtype={"id": str}).set_index("id")
            for run in (base, new))
    if set(a.index) != set(b.index) or len(a) != len(b):
        raise DocsError(f"{where}: its test records differ from the earlier run's ({len(set(a.index) ^ set(b.index))} "
                        "ids in one only)")
    b = b.loc[a.index]
    if not (a["label"] == b["label"]).all():
        raise DocsError(f"{where}: labels differ from the earlier run's, first: record "
                        f"{a.index[a['label'] != b['label']][0]}")
    t = mcnemar((a["predicted"] == a["label"]).to_numpy(), (b["predicted"] == b["label"]).to_numpy())
    return fp(t["p_value"]) + f" ({t['only_proposed_correct']} / {t['only_baseline_correct']})"


LPFT_RUN = "history/8a463aa"  # results/history/8a463aa/<dataset>/: the default run that introduced LP-FT


def lpft_test(res: Results, _arg=None) -> str:
    """LP-FT in the default run that introduced it (``results/history/8a463aa/<dataset>/``): per dataset whose transfer
    metrics hold a ``transfer.lpft`` record, the pipeline's validation rule (frozen head, LP-FT top, their mean) and
    what it kept, then :func:`_runs_compared`'s test rows against the default run before LP-FT
    (``results/finetune_cpu/<dataset>/default_run/``)."""
    rows, notes = [], []
    for ds in DATASET_ORDER:
        rel = f"{LPFT_RUN}/{ds}/metrics/efficientnet_lite0_transfer.json"
        if not (res.dir / rel).is_file():
            continue
        transfer = res.json(rel)["transfer"]
        if "lpft" not in transfer:
            continue
        lp = transfer["lpft"]
        notes.append(f"- {ds} ({transfer['image_size']} px): the LP-FT top (probe C = {lp['probe_C']:g}) ran "
                     f"{lp['epochs_run']} epochs (best {lp['best_epoch']}) in {fint(round(lp['train_seconds']))} s; "
                     f"validation loss {f3(lp['validation_loss_frozen_head'])} (frozen head, C = "
                     f"{lp['frozen_head_C_lowest_loss']:g}), {f3(lp['validation_loss_lpft_top'])} (LP-FT top), "
                     f"{f3(lp['validation_loss_mean'])} (their mean); accuracy "
                     f"{f3(lp['validation_accuracy_frozen_head'])}, {f3(lp['validation_accuracy_lpft_top'])}, "
                     f"{f3(lp['validation_accuracy_mean'])}: **{'mean kept' if lp['chosen'] == 'mean' else 'frozen head kept'}**"
                     f" ({_machine(lp['provenance'])}).")
        if lp["chosen"] == "mean":
            rows += _runs_compared(res, ds, f"{FINETUNE_CPU}/{ds}/{FINETUNE_BASE}/", f"{LPFT_RUN}/{ds}/")
    if not notes:
        raise DocsError(f"{res.dir / LPFT_RUN}: no transfer metrics with an LP-FT record (the snapshot of the default "
                        "run that introduced LP-FT, baselines.transfer.efficientnet_lite0.lpft.datasets)")
    lines = ["Validation, by the pipeline's rule:", "", *notes]
    if rows:
        lines += ["", "Test, evaluated once (the default run before LP-FT → this default run; accuracy with its 95% "
                  "CI; McNemar: p (only the first / only the second correct), against the proposed CNN of the same "
                  "run, and between the two runs' transfer rows, the run before first):", ""]
        lines += _table(["dataset", "row", "accuracy", "ROC-AUC", "specificity", "McNemar: proposed CNN vs this row",
                         "McNemar: before vs now"], rows, "|---|---|---|---|---|---|---|")
    return "\n".join(lines) + "\n"


def finetune_cpu_line(res: Results, _arg=None) -> str:
    """README's sentence on the ``config/finetune.yaml`` run (``results/finetune_cpu/``): which network each dataset
    kept and, where the fine-tuned one was kept, its test accuracy against the proposed CNN's, and the ensemble's."""
    kept, frozen, seconds = [], [], 0.0
    for ds in _finetune_runs(res):
        title = {"chest_xray": "chest X-ray", "brain_mri": "brain MRI"}.get(ds, ds)
        ft = _finetune_record(res, ds)
        seconds += _rule_seconds(res, ds)
        if ft["chosen"] == "fine_tuned":
            acc = {m: res.json(f"{FINETUNE_CPU}/{ds}/metrics/{m}.json")["accuracy"]["value"]
                   for m in ("efficientnet_lite0_transfer", "ensemble")}
            vs = res.json(f"{FINETUNE_CPU}/{ds}/paired_tests.json")["efficientnet_lite0_transfer"]["p_value"]
            kept.append(f"{title} test accuracy: transfer {f3(acc['efficientnet_lite0_transfer'])} (proposed CNN "
                        f"{f3(res.json(f'{FINETUNE_CPU}/{ds}/{FINETUNE_BASE}/metrics/aes_cnn.json')['accuracy']['value'])}, "
                        f"{_p_text(vs)}), ensemble "
                        f"{f3(acc['ensemble'])}")
        else:
            frozen.append(title)
    return (f"EfficientNet-Lite0 also fine-tuned (`config/finetune.yaml`, +{round(seconds / 60)} min here, kept on "
            "validation): " + "; ".join(kept or ["nothing changes"])
            + (f"; {' and '.join(frozen)} kept the frozen head" if frozen else "")
            + " ([how](docs/tuning.md#fine-tuning-on-the-cpu-evaluated-once-written-before-it-ran)).\n")


def seeds(res: Results, ds: str | None) -> str:
    """The seed spread of the default configuration (``results/seeds/<dataset>.csv``, benchmarks/seed_spread.py)."""
    if not ds:
        raise DocsError("seeds needs a dataset: seeds:<dataset>")
    frame = res.csv(f"seeds/{ds}.csv")
    cols = [c for c in ("val_accuracy", "val_roc_auc", "test_accuracy", "test_roc_auc", "test_specificity",
                        "val_accuracy_unadapted", "test_accuracy_unadapted") if c in frame.columns]
    titles = {c: c.replace("_unadapted", " without adaptation").replace("_", " ").replace("roc auc", "ROC-AUC")
              for c in cols}
    rows = [[str(int(r["seed"])), *(f3(r[c]) for c in cols), str(int(r["epochs_run"])), str(int(r["best_epoch"]))]
            for _, r in frame.iterrows()]
    rows.append(["**mean ± sd**", *(f"{f3(frame[c].mean())} ± {f3(frame[c].std(ddof=1))}" for c in cols), "", ""])
    adapted = "adapt_batchnorm" in frame.columns and bool(frame["adapt_batchnorm"].all())
    lines = [f"{len(frame)} seeds of the default recipe on {ds}"
             + (", batch-norm statistics adapted to each split's images (labels unused; the same networks' scores "
                "without adaptation beside them, reported, never used)" if adapted else "")
             + f", {frame['machine'].iloc[0]}, backend {frame['backend'].iloc[0]} (`results/seeds/{ds}.csv`):", ""]
    lines += _table(["seed", *(titles[c] for c in cols), "epochs", "best epoch"], rows,
                    "|---|" + "---:|" * (len(cols) + 2))
    return "\n".join(lines) + "\n"


def seeds_members(res: Results, ds: str | None) -> str:
    """The spread of the default's seed ensemble over seed groups (``results/seeds/members<N>/<dataset>.csv``,
    ``benchmarks/seed_spread.py --members N``): each ensemble's scores, their mean and sd, and its networks alone."""
    if not ds or ":" not in ds:
        raise DocsError("seeds-members needs members and a dataset: seeds-members:<members>:<dataset>")
    n, ds = ds.split(":", 1)
    rel = f"seeds/members{n}/{ds}.csv"
    frame = res.csv(rel)
    ens, alone = frame[frame["members"] == int(n)], frame[frame["members"] == 1]
    wanted = sorted(int(s) + i for s in ens["seed"] for i in range(int(n)))
    if ens.empty or sorted(alone["seed"].astype(int)) != wanted:
        raise DocsError(f"results/{rel}: needs each ensemble of {n} (seeds s .. s + {int(n) - 1}) beside its {n} "
                        f"networks alone, found ensembles {sorted(ens['seed'].astype(int))} and networks "
                        f"{sorted(alone['seed'].astype(int))}")
    for col in ("machine", "backend", "threads"):
        if frame[col].nunique() != 1:
            raise DocsError(f"results/{rel}: rows from more than one {col} ({', '.join(map(str, frame[col].unique()))})")
    cols = [c for c in ("val_accuracy", "val_roc_auc", "val_loss", "test_accuracy", "test_roc_auc",
                        "test_specificity", "val_accuracy_unadapted", "test_accuracy_unadapted") if c in frame.columns]
    titles = [c.replace("_unadapted", " without adaptation").replace("_", " ").replace("roc auc", "ROC-AUC")
              for c in cols]
    rows = [[f"{int(r['seed'])}–{int(r['seed']) + int(n) - 1}", *(f3(r[c]) for c in cols),
             fint(round(r["train_seconds"]))] for _, r in ens.iterrows()]
    rows.append(["**mean ± sd**", *(f"{f3(ens[c].mean())} ± {f3(ens[c].std(ddof=1))}" for c in cols), ""])
    rows.append([f"*{len(alone)} networks alone*", *(f"{f3(alone[c].mean())} ± {f3(alone[c].std(ddof=1))}"
                                                     for c in cols), ""])
    adapted = "adapt_batchnorm" in frame.columns and bool(frame["adapt_batchnorm"].all())
    lines = [f"{len(ens)} seed ensembles of {n} networks of the default recipe on {ds} (the seeds of each, averaged"
             + ("; each network's batch-norm statistics adapted to each split's images, labels unused" if adapted else "")
             + f"), {frame['machine'].iloc[0]}, backend {frame['backend'].iloc[0]}, {int(frame['threads'].iloc[0])} "
             f"thread(s) (`results/{rel}`):", ""]
    lines += _table(["seeds", *titles, "train s"], rows, "|---|" + "---:|" * (len(cols) + 1))
    lines += ["", f"Test accuracy of the {len(alone)} networks alone: {f3(alone['test_accuracy'].min())} to "
                  f"{f3(alone['test_accuracy'].max())}."]
    return "\n".join(lines) + "\n"


SHIFT_FAMILY_TITLES = {"thumbnail": "16×16 thumbnail (the test-like split's classifier)",
                       "centre": "its centre (inner 8×8 blocks)", "border": "its border (outer ring of 2 blocks)",
                       "histogram": "intensity histogram (32 bins)", "profiles": "row and column mean profiles",
                       "sharpness": "sharpness (mean absolute gradient, 2 numbers)"}


def shift_features(res: Results, ds: str | None) -> str:
    """Where the train -> test shift lies (``results/tuning/testlike/shift_features_<dataset>.csv``,
    benchmarks/shift_features.py): the domain classifier's ROC-AUC per feature family and the mean test-likeness of
    each class's training images."""
    if not ds:
        raise DocsError("shift-features needs a dataset: shift-features:<dataset>")
    rel = f"tuning/testlike/shift_features_{ds}.csv"
    frame = res.csv(rel)
    auc, like = frame[frame["kind"] == "domain ROC-AUC"], frame[frame["kind"] == "mean test-likeness"]
    if auc.empty or like.empty:
        raise DocsError(f"results/{rel}: needs domain ROC-AUC and mean test-likeness rows")
    lines = _table(["features the domain classifier sees (official training vs test, no class label)", "ROC-AUC"],
                   [[SHIFT_FAMILY_TITLES.get(r["name"], r["name"]), f3(r["value"])] for _, r in auc.iterrows()],
                   "|---|---:|")
    lines += [""] + _table(["images (out-of-fold scores of the thumbnail classifier)", "n", "mean test-likeness"],
                           [[r["name"], fint(int(r["n"])), f3(r["value"])] for _, r in like.iterrows()], "|---|---:|---:|")
    return "\n".join(lines) + f"\n\n(`results/{rel}`)\n"


FULL_RUN_DIGESTS = "benchmarks/full_runs_predictions.csv"  # run, file, sha256 (benchmarks/full_run.py)


def prediction_digests(results: Path) -> dict[str, str]:
    """SHA-256 of every prediction file of a run: ``<dataset>/predictions/<method>.csv`` -> hex digest."""
    return {p.relative_to(results).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(results).glob("*/predictions/*.csv"))}


def _share(i: int, minutes, what: str, cores: float, wall: float) -> str:
    """``minutes`` with their share of ``cores`` x ``wall`` minutes ("—" where either is not recorded)."""
    if pd.isna(minutes) or pd.isna(cores):
        return "—"
    share = float(minutes) / (cores * wall)
    if not 0 < share <= 1.01:  # the file's minutes are rounded
        raise DocsError(f"results/benchmarks/full_runs.csv row {i + 2}: {minutes} {what} on {cores:g} cores in "
                        f"{wall:g} minutes is impossible")
    return f"{float(minutes):.1f} ({min(share, 1.0):.0%})"


def full_runs(res: Results, _arg=None) -> str:
    """Wall times of full runs on clean clones (``results/benchmarks/full_runs.csv``: commit, configuration, machine,
    minutes, how it was measured; optionally ``cores``, ``job_minutes`` and ``cpu_minutes``: the run's benchmark
    files' wall seconds and CPU seconds summed), the rows in the file's order. Beside the minutes their share of
    the cores' time: job-minutes say how much of it jobs occupied (a job waiting for a core counts), CPU-minutes how
    much they used (sampled by Snakemake: a lower bound). Where :data:`FULL_RUN_DIGESTS` holds the SHA-256 of the
    prediction files of a row's ``run``, how many of them equal this results directory's."""
    frame = res.csv("benchmarks/full_runs.csv")
    missing = {"commit", "what", "machine", "wall_minutes", "measured"} - set(frame.columns)
    if missing:
        raise DocsError(f"results/benchmarks/full_runs.csv: columns {sorted(missing)} missing")
    digests = res.csv(FULL_RUN_DIGESTS) if (res.dir / FULL_RUN_DIGESTS).is_file() else None
    now = prediction_digests(res.dir)
    rows = []
    for i, r in frame.iterrows():
        cores, wall = float(r.get("cores", float("nan"))), float(r["wall_minutes"])
        slots = _share(i, r.get("job_minutes"), "job-minutes", cores, wall)
        cpu = _share(i, r.get("cpu_minutes"), "CPU-minutes", cores, wall)
        same = "—"
        if digests is not None:
            mine = digests[digests["run"] == r.get("run")]
            if len(mine):
                same = f"{sum(now.get(f) == h for f, h in zip(mine['file'], mine['sha256']))} of {len(mine)}"
        rows.append([f"`{r['commit']}`", r["what"], r["machine"], f"{wall:.1f}", slots, cpu, same, r["measured"]])
    return "\n".join(_table(["commit", "configuration", "machine", "wall minutes", "job-minutes (cores occupied)",
                             "CPU-minutes (cores used)", "prediction files equal to `results/`'s", "measured"],
                            rows, "|---|---|---|---:|---:|---:|---:|---|")) + "\n"


MEMBERS_BASE = LPFT_RUN  # the default run before the seed ensemble and single-thread jobs
MEMBERS_ROWS = (("aes_cnn", "proposed CNN"), ("shallow_cnn", "shallow CNN"),
                ("efficientnet_lite0_transfer", "transfer"), ("ensemble", "ensemble"))


def _run_label(run: str) -> str:
    return "this run" if not run else f"`results/{run}`"


# Full runs compared by members-test:<name>: (first, second) folders under results/ laid out like it ("" = this run)
RUN_PAIRS = {
    "": (MEMBERS_BASE, ""),  # the committed run before the seed ensemble (another VM) -> this run
    "same-vm": (f"{MEMBERS_BASE}-avx512", ""),  # the default before, rerun on this run's VM -> this run
    "processor": (MEMBERS_BASE, f"{MEMBERS_BASE}-avx512"),  # the default before on the two VMs
}


def members_test(res: Results, arg: str | None = None) -> str:
    """Two full runs compared (``members-test:<name>``, the pairs of :data:`RUN_PAIRS`): per dataset how the proposed
    CNN was trained in each, with its validation scores and training time and the machine, then :func:`_runs_compared`'s test rows of the proposed CNN, the shallow CNN, the transfer
    baseline and the ensemble, each with McNemar's test between the two runs."""
    if (arg or "") not in RUN_PAIRS:
        raise DocsError(f"members-test:{arg}: unknown comparison (known: {', '.join(sorted(RUN_PAIRS))})")
    base, new = RUN_PAIRS[arg or ""]
    prefix = {run: f"{run}/" if run else "" for run in (base, new)}
    rows, notes = [], []
    for ds in DATASET_ORDER:
        if not (res.dir / f"{prefix[new]}{ds}/training/aes_cnn_training.json").is_file():
            continue
        old, now = (res.json(f"{prefix[run]}{ds}/training/aes_cnn_training.json") for run in (base, new))
        described = []
        for info in (old, now):
            members = info.get("members") or []
            seeds = ", ".join(str(m["seed"]) for m in members)
            epochs = " / ".join(f"{m['epochs_run']} ({m['best_epoch']})" for m in members)
            what = (f"mean of {len(members)} networks (seeds {seeds}; epochs run (best) {epochs})" if members
                    else f"one network (seed {info['seed']}; {info['epochs_run']} epochs, best {info['best_epoch']})")
            described.append(f"{what}, {info['threads']} thread(s), {cpu_kind(info['provenance'])}")
        notes.append(f"- {ds}: {described[0]} → {described[1]}; validation accuracy {f3(old['val_accuracy'])} → "
                     f"{f3(now['val_accuracy'])}, loss {f3(old['val_loss'])} → {f3(now['val_loss'])}; training "
                     f"{fint(round(old['train_seconds']))} s → {fint(round(now['train_seconds']))} s.")
        rows += _runs_compared(res, ds, f"{prefix[base]}{ds}/", f"{prefix[new]}{ds}/", MEMBERS_ROWS,
                               [m for m, _ in MEMBERS_ROWS])
    if not notes:
        raise DocsError(f"{res.dir / prefix[new]}: no training record of the proposed CNN")
    lines = [f"The proposed CNN, {_run_label(base)} → {_run_label(new)}:", "", *notes, "",
             f"Test ({_run_label(base)} → {_run_label(new)}; accuracy with its 95% CI; McNemar: p (only the first / "
             "only the second correct), against the proposed CNN of the same run, and between the two runs' rows, "
             "the first run first):", ""]
    lines += _table(["dataset", "row", "accuracy", "ROC-AUC", "specificity", "McNemar: proposed CNN vs this row",
                     "McNemar: between the runs"], rows, "|---|---|---|---|---|---|---|")
    return "\n".join(lines) + "\n"


def cpu_kind(provenance: dict) -> str:
    """The processor as the provenance names it, with AVX-512 said: the CPU flags decide which kernels run."""
    c = provenance.get("cpu", {})
    avx512 = any(f.startswith("avx512") for f in c.get("flags", []))
    return f"{c.get('model_name') or c.get('machine')} {'with' if avx512 else 'without'} AVX-512"


GENERATORS = {
    "headline": headline,
    "comparison": comparison,
    "data": data_block,
    "findings": findings,
    "verdict": verdict,
    "aes-timing": aes_timing,
    "pipeline-time": pipeline_time,
    "security": security,
    "security-table": security_table,
    "leakage": leakage,
    "tuning": tuning,
    "tuning-transfer": tuning_transfer,
    "tuning-ensemble": tuning_ensemble,
    "tuning-seed-ensemble": tuning_seed_ensemble,
    "tuning-testlike": tuning_testlike,
    "tuning-adapt": tuning_adapt,
    "tuning-native": tuning_native,
    "tuning-finetune": tuning_finetune,
    "tuning-lpft": tuning_lpft,
    "tuning-aspect": tuning_aspect,
    "tuning-distill": tuning_distill,
    "subgroups": subgroups,
    "tuning-testlike-brain": tuning_testlike_brain,
    "seeds": seeds,
    "seeds-members": seeds_members,
    "finetune-cpu": finetune_cpu,
    "finetune-cpu-line": finetune_cpu_line,
    "lpft-test": lpft_test,
    "members-test": members_test,
    "full-runs": full_runs,
    "shift-features": shift_features,
}


def generate(name: str, res: Results) -> str:
    kind, _, arg = name.partition(":")
    if kind not in GENERATORS:
        raise DocsError(f"unknown generated block {name!r} (known: {', '.join(sorted(GENERATORS))})")
    try:
        return GENERATORS[kind](res, arg or None)
    except (KeyError, IndexError) as exc:
        raise DocsError(f"block {name!r}: results lack {exc}") from exc


# ---------------------------------------------------------------- documents

def check_markers(text: str, where: str = "") -> None:
    """BEGIN and END markers pair up, in order, with the same names."""
    stack = []
    for m in BEGIN_OR_END.finditer(text):
        kind, name = m.groups()
        if kind == "BEGIN":
            if stack:
                raise DocsError(f"{where}: block {name!r} begins inside block {stack[-1]!r}")
            stack.append(name)
        elif not stack or stack.pop() != name:
            raise DocsError(f"{where}: END generated: {name} without its BEGIN")
    if stack:
        raise DocsError(f"{where}: block {stack[-1]!r} has no END marker")


def render(text: str, res: Results, where: str = "") -> str:
    """``text`` with every generated block rebuilt from ``res``."""
    check_markers(text, where)
    return BLOCK.sub(lambda m: m.group(1) + generate(m.group("name"), res) + m.group(4), text)


def outside_blocks(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + m.group(4), text)


def allowed_numbers(res: Results) -> set[str]:
    """Numbers that may be typed: the paper's and the published reference points (workflow/resources)."""
    out = set()

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, float):
            out.add(f"{node:.3f}")

    walk(res.paper())
    return out


def stray_numbers(text: str, res: Results) -> list[tuple[int, str]]:
    """(line number, number) for result-like numbers typed outside generated blocks (code spans included)."""
    allowed = allowed_numbers(res)
    found = []
    # line numbers refer to the file: blank out block bodies, keeping their line breaks
    blanked = BLOCK.sub(lambda m: m.group(1) + re.sub(r"[^\n]", "", m.group("body")) + m.group(4), text)
    for lineno, line in enumerate(blanked.splitlines(), 1):
        for m in RESULT_LIKE.finditer(line):
            if m.group(1) not in allowed:
                found.append((lineno, m.group(1)))
    return found


def default_documents(root: Path) -> list[Path]:
    docs = sorted((root / "docs").glob("*.md"))
    return [p for p in [root / "README.md", *docs] if p.is_file()]


def run(root: Path, results: Path | None = None, documents: list[Path] | None = None, check: bool = False,
        out=sys.stdout) -> int:
    root = Path(root)
    res = Results(results or root / "results", root)
    documents = documents or default_documents(root)
    problems = 0
    for doc in documents:
        text = doc.read_text()
        new = render(text, res, str(doc))
        n_blocks = len(BLOCK.findall(text))
        if check:
            if new != text:
                problems += 1
                diff = difflib.unified_diff(text.splitlines(), new.splitlines(), f"{doc} (as committed)",
                                            f"{doc} (from {res.dir})", lineterm="", n=1)
                print("\n".join(diff), file=out)
            for lineno, number in stray_numbers(text, res):
                problems += 1
                print(f"{doc}:{lineno}: {number} typed outside a generated block (put it in a block, or leave it "
                      "out)", file=out)
        elif new != text:
            doc.write_text(new)
            print(f"{doc}: {n_blocks} generated blocks rewritten", file=out)
    if check and problems:
        print(f"{problems} problem(s): run `python -m cryptomed docs` after the pipeline", file=out)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cryptomed docs", description=__doc__.splitlines()[0])
    ap.add_argument("documents", nargs="*", type=Path, help="markdown files (default: README.md and docs/*.md)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block or a number is stale")
    ap.add_argument("--results", type=Path, help="results directory (default: results/)")
    ap.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    args = ap.parse_args(argv)
    try:
        return run(args.root, args.results, args.documents or None, check=args.check)
    except DocsError as exc:
        print(f"cryptomed docs: {exc}", file=sys.stderr)
        return 1
