#!/usr/bin/env python3
"""Learning-curve file (``local/learning_curve.py``) -> markdown table, PNG plot, best WER line.

    local/report_learning_curve.py exp_long/sled_x/learning_curve.tsv \
        --md results/long_run/learning_curve.md --png results/long_run/learning_curve.png

Prints the table and the line ``best held-out WER: X (ground truth: Y)`` and writes them to
``--md``; the plot (held-out energy distance with own / other / no text, the own text's
gain over the others in %, and WER, free-running and teacher-forced with own / other text,
against updates) goes to ``--png``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import MISSING, read_rows  # noqa: E402


def number(value: str) -> str:
    return "–" if value == MISSING else f"{float(value):.3f}"


def table(rows):
    lines = ["| updates | epoch | held-out ED own / other / no text | own vs other | WER | frames / reference "
             "| teacher-forced WER own / other text |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        own, other, none = float(r["ed_own"]), float(r["ed_other"]), float(r["ed_none"])
        lines.append(f"| {r['updates']} | {r['epoch']} | {own:.3f} / {other:.3f} / {none:.3f} | "
                     f"{100 * (other - own) / other:+.1f}% | {float(r['wer']):.3f} | {float(r['frames_ratio']):.2f} "
                     f"| {number(r['tf_wer_own'])} / {number(r['tf_wer_other'])} |")
    return "\n".join(lines)


def best_line(rows):
    best = min(rows, key=lambda r: float(r["wer"]))
    return (f"best held-out WER: {float(best['wer']):.3f} (ground truth: {float(best['wer_groundtruth']):.3f}), "
            f"at {best['updates']} updates")


def plot(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [int(r["updates"]) for r in rows]
    fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(11, 3), dpi=80)
    for col, label in (("ed_own", "own text"), ("ed_other", "other text"), ("ed_none", "no text")):
        ax1.plot(x, [float(r[col]) for r in rows], marker=".", label=label)
    ax1.set_xlabel("updates")
    ax1.set_ylabel("held-out energy distance")
    ax1.legend(fontsize=8)
    # reading: how much worse the same frames score with the wrong text / no text
    for col, label in (("ed_other", "other text"), ("ed_none", "no text")):
        ax3.plot(x, [100 * (float(r[col]) - float(r["ed_own"])) / float(r[col]) for r in rows], marker=".",
                 label=f"{label} vs own")
    ax3.axhline(0, color="grey", linewidth=0.5)
    ax3.set_xlabel("updates")
    ax3.set_ylabel("energy distance gain of own text, %")
    ax3.legend(fontsize=8)
    ax2.plot(x, [float(r["wer"]) for r in rows], marker=".", label="model (free-running)")
    for col, label in (("tf_wer_own", "teacher-forced, own text"), ("tf_wer_other", "teacher-forced, other text")):
        tf = [(u, float(r[col])) for u, r in zip(x, rows) if r[col] != MISSING]
        if tf:
            ax2.plot(*zip(*tf), marker="x", linewidth=0.8, label=label)
    ax2.plot(x, [float(r["wer_groundtruth"]) for r in rows], linestyle="--", label="ground truth")
    ax2.plot(x, [2 * float(r["wer_groundtruth"]) for r in rows], linestyle=":", label="target (2x ground truth)")
    ax2.set_xlabel("updates")
    ax2.set_ylabel("held-out WER (pocketsphinx)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="learning_curve.tsv")
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    rows = read_rows(args.results)
    if not rows:
        sys.exit(f"{args.results}: no learning-curve rows yet")
    rows.sort(key=lambda r: int(r["updates"]))
    text = table(rows) + "\n\n" + best_line(rows) + "\n"
    print(text, end="")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text, encoding="utf-8")
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        plot(rows, args.png)


if __name__ == "__main__":
    main()
