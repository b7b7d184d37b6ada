"""Where a pipeline run spends its time, from the files the run wrote (no re-timing, nothing hard-coded).

Reads Snakemake's benchmark files (results/benchmarks/<rule>/*.tsv: wall seconds per job), the encrypt/decrypt
rules' per-record cipher times (results/<dataset>/timing/*.csv) and the training summaries
(results/<dataset>/training/*_training.json), and prints:
  * wall time per rule (sum over its jobs) and its share of the sum over all jobs;
  * the share of encryption plus decryption in the whole pipeline, two ways: the encrypt and decrypt rules'
    wall time (process start, reading and writing included) and the time inside the cipher calls alone.
    Target: <= 1 %;
  * decrypt-and-verify throughput against what training consumes (images per second of the proposed
    method's training, epochs included). Target: >= 20x.

    python benchmarks/pipeline.py [--results results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

SHARE_TARGET = 0.01
THROUGHPUT_TARGET = 20.0


def rule_times(results: Path) -> pd.DataFrame:
    """One row per benchmark file (job): rule, job, its wall seconds and CPU seconds (means over repeats), path."""
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem
        bench = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": rule, "job": tsv.stem, "seconds": float(bench["s"].astype(float).mean()),
                     "cpu_seconds": float(bench["cpu_time"].astype(float).mean()), "path": tsv})
    if not rows:
        raise SystemExit(f"no benchmark files under {results / 'benchmarks'}: run the pipeline first")
    return pd.DataFrame(rows)


def cipher_times(results: Path) -> dict:
    out = {}
    for part in ("encrypt", "decrypt"):
        frames = [pd.read_csv(p) for p in sorted(results.glob(f"*/timing/{part}.csv"))]
        t = pd.concat(frames) if frames else pd.DataFrame({"seconds": []})
        out[part] = {"records": len(t), "seconds": float(t["seconds"].sum())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = ap.parse_args(argv)
    jobs = rule_times(args.results)
    total = jobs["seconds"].sum()
    per_rule = jobs.groupby("rule")["seconds"].agg(["count", "sum"]).sort_values("sum", ascending=False)
    per_rule["share"] = per_rule["sum"] / total
    print(f"Wall time per rule (sum over jobs; {len(jobs)} jobs, {total / 60:.1f} min in all, run one after another "
          "would take this long):")
    for rule, r in per_rule.iterrows():
        print(f"  {rule:24s} {int(r['count']):3d} jobs {r['sum']:9.1f} s  {100 * r['share']:6.2f} %")

    crypto_rules = per_rule.loc[per_rule.index.intersection(["encrypt", "decrypt"]), "sum"].sum()
    cipher = cipher_times(args.results)
    cipher_s = cipher["encrypt"]["seconds"] + cipher["decrypt"]["seconds"]
    # the proposed method's training decrypts its images in memory again (wall time of that step)
    in_training = sum(json.loads(p.read_text()).get("data_load_seconds", 0.0)
                      for p in args.results.glob("*/training/aes_cnn_training.json"))
    print("\nEncryption + decryption share of the pipeline (target <= 1 %):")
    for label, seconds in (("encrypt + decrypt rules, wall", crypto_rules), ("inside the cipher calls", cipher_s),
                           ("rules + training's in-memory decrypt", crypto_rules + in_training)):
        share = seconds / total
        print(f"  {label:38s} {seconds:8.2f} s = {100 * share:6.3f} %  -> "
              f"{'meets' if share <= SHARE_TARGET else 'misses'} the 1 % target")

    n_dec = cipher["decrypt"]["records"]
    if n_dec and cipher["decrypt"]["seconds"] > 0:
        decrypt_rate = n_dec / cipher["decrypt"]["seconds"]  # one core's worth: per-record times summed
        print("\nDecrypt-and-verify throughput against training consumption (target >= 20x):")
        print(f"  decrypt: {n_dec} records, {decrypt_rate:,.0f} images/s on one core (sum of per-record times)")
        dec_jobs = jobs[jobs["rule"] == "decrypt"]
        if len(dec_jobs):
            wall_rate = n_dec / dec_jobs["seconds"].sum()
            print(f"  decrypt rule, wall (process start and reading the container included): {wall_rate:,.0f} images/s")
        for info_file in sorted(args.results.glob("*/training/aes_cnn_training.json")):
            info = json.loads(info_file.read_text())
            rate = info.get("train_images_per_second")
            if rate:
                ratio = decrypt_rate / rate
                print(f"  {info['dataset']:12s} training consumes {rate:7.1f} images/s ({info.get('backend')}, "
                      f"{info.get('threads')} threads): decrypt is {ratio:,.0f}x faster -> "
                      f"{'meets' if ratio >= THROUGHPUT_TARGET else 'misses'} the 20x target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
