#!/usr/bin/env python3
"""The decode step's linears at 1 / 2 / 4 rows (CFG doubles the rows): ``F.linear(x, W)``
vs ``torch.mm(W, x^T)`` (the form ``modules/packed.py`` uses for 2-4 rows) vs one GEMV per
row, paper dims, on this host's threads; microseconds, 20th percentile of 100 calls (robust
to a shared machine's preemption), and the 2-row / 1-row ratio (goal ~1: a row costs
nothing once the weight is read).

    .venv/bin/python bench/bench_linear_rows.py
"""

import time

import torch
import torch.nn.functional as F

SHAPES = {"q|k|v": (3072, 1024), "o": (1024, 1024), "gate|up": (5504, 1024), "down": (1024, 2752),
          "generator modulation": (3072, 1024), "generator fc": (1024, 1024)}
FORMS = {
    "F.linear": lambda x, w: F.linear(x, w),
    "mm(W, x^T)": lambda x, w: torch.mm(w, x.t()).t(),
    "GEMV per row": lambda x, w: torch.stack([torch.mv(w, row) for row in x]),
}


def micros(fn, calls=100):
    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[calls // 5] * 1e6


def main():
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"MKL {torch.backends.mkl.is_available()}")
    for name, (out_features, in_features) in SHAPES.items():
        weight = torch.randn(out_features, in_features) * 0.02
        cells = []
        for form, fn in FORMS.items():
            t = {rows: micros(lambda: fn(torch.randn(rows, in_features), weight)) for rows in (1, 2, 4)}
            cells.append(f"{form} {t[1]:.0f}/{t[2]:.0f}/{t[4]:.0f} us ({t[2] / t[1]:.2f}x)")
        print(f"{name:>21} {out_features}x{in_features} rows 1/2/4: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
