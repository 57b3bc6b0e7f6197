#!/usr/bin/env python3
"""Sort a Kaldi-style data directory, keep only consistent entries, and rebuild spk2utt.

    fix_data_dir.py [--validate-only] DATA_DIR

Utterance-level files (text, utt2spk, segments, feats.scp, utt2num_samples, utt2dur,
utt2num_frames, speech_shape) are sorted by key (byte order, as LC_ALL=C sort) and
reduced to the utterances present in all of them; with ``segments`` the recordings in
``wav.scp`` (and reco2dur) are reduced to the ones still used; without it ``wav.scp``
is utterance-level. ``spk2utt`` is regenerated from ``utt2spk``. Each file is written to
a temp name and renamed, and originals that changed are kept under ``.backup/``.

``--validate-only`` changes nothing and exits 1 with a list of problems: unsorted or
duplicate keys, keys missing from some files, empty transcripts, bad segment times,
keys containing '/' (they become file names).
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

UTT_FILES = ["text", "utt2spk", "segments", "feats.scp", "utt2num_samples", "utt2dur",
             "utt2num_frames", "speech_shape"]
RECO_FILES = ["wav.scp", "reco2dur"]


def read_keyed(path: Path):
    """Return [(key, rest_of_line)] in file order; blank lines are an error."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            parts = line.split(maxsplit=1)
            if not parts:
                raise ValueError(f"{path}:{n}: empty line")
            rows.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return rows


def write_atomic(path: Path, lines):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def c_sorted(rows):
    return sorted(rows, key=lambda r: r[0].encode("utf-8"))


def validate(data_dir: Path):
    problems = []
    present = {}
    for name in UTT_FILES + RECO_FILES:
        p = data_dir / name
        if p.exists():
            try:
                present[name] = read_keyed(p)
            except ValueError as e:
                problems.append(str(e))
    for required in ("wav.scp", "text", "utt2spk"):
        if required not in present:
            problems.append(f"{data_dir}/{required} is missing")
    for name, rows in present.items():
        keys = [k.encode("utf-8") for k, _ in rows]
        if keys != sorted(keys):
            problems.append(f"{data_dir}/{name} is not sorted (run utils/fix_data_dir.sh {data_dir})")
        if len(set(keys)) != len(keys):
            problems.append(f"{data_dir}/{name} has duplicate keys")
    if problems:
        return problems
    utt_level = [n for n in UTT_FILES if n in present]
    if "segments" not in present:
        utt_level.append("wav.scp")
    ref = set(k for k, _ in present["utt2spk"])
    for name in utt_level:
        keys = set(k for k, _ in present[name])
        if keys != ref:
            only_ref = sorted(ref - keys)[:3]
            only_here = sorted(keys - ref)[:3]
            problems.append(f"{data_dir}/{name} and utt2spk have different keys "
                            f"(e.g. missing here: {only_ref}, extra here: {only_here})")
    for k, v in present["text"]:
        if not v.strip():
            problems.append(f"text is empty for utterance '{k}'")
    for k, _ in present["utt2spk"]:
        if "/" in k:
            problems.append(f"utterance id '{k}' contains '/'")
    if "segments" in present:
        recos = set(k for k, _ in present["wav.scp"])
        for k, v in present["segments"]:
            f = v.split()
            if len(f) != 3:
                problems.append(f"segments line for '{k}' should be: utt reco start end")
                continue
            try:
                start, end = float(f[1]), float(f[2])
            except ValueError:
                problems.append(f"segments line for '{k}' has non-numeric times")
                continue
            if not (0 <= start < end):
                problems.append(f"segment '{k}' has start={start} end={end}; need 0 <= start < end")
            if f[0] not in recos:
                problems.append(f"segment '{k}' refers to recording '{f[0]}', which is not in wav.scp")
    if "spk2utt" not in [p.name for p in data_dir.iterdir()]:
        problems.append(f"{data_dir}/spk2utt is missing")
    return problems


def fix(data_dir: Path):
    tables = {n: read_keyed(data_dir / n) for n in UTT_FILES + RECO_FILES if (data_dir / n).exists()}
    for required in ("wav.scp", "text", "utt2spk"):
        if required not in tables:
            raise SystemExit(f"fix_data_dir: {data_dir}/{required} is missing")
    has_segments = "segments" in tables
    utt_level = [n for n in UTT_FILES if n in tables] + ([] if has_segments else ["wav.scp"])

    keep = None
    for name in utt_level:
        keys = set(k for k, v in tables[name] if name != "text" or v.strip())
        keep = keys if keep is None else keep & keys
    if has_segments:
        recos = set(k for k, _ in tables["wav.scp"])
        keep = set(k for k, v in tables["segments"] if k in keep and v.split()[0] in recos)
        used_recos = set(v.split()[0] for k, v in tables["segments"] if k in keep)

    backup = data_dir / ".backup"
    report = []
    for name, rows in tables.items():
        if name in utt_level:
            wanted = keep
        else:
            wanted = used_recos if has_segments else None
        seen = set()
        out = []
        for k, v in c_sorted(rows):
            if (wanted is not None and k not in wanted) or k in seen:
                continue
            seen.add(k)
            out.append((k, v))
        if out != rows:
            backup.mkdir(exist_ok=True)
            shutil.copy(data_dir / name, backup / name)
            write_atomic(data_dir / name, [f"{k} {v}".rstrip() for k, v in out])
            if len(out) != len(rows):
                report.append(f"{name}: {len(rows)} -> {len(out)}")

    spk2utt = {}
    for k, v in read_keyed(data_dir / "utt2spk"):
        spk2utt.setdefault(v.split()[0], []).append(k)
    write_atomic(data_dir / "spk2utt",
                 [f"{s} {' '.join(u)}" for s, u in c_sorted(list(spk2utt.items()))])
    n = len(keep)
    print(f"fix_data_dir: {data_dir}: {n} utterances, {len(spk2utt)} speakers"
          + (f"; removed entries: {', '.join(report)}" if report else ""), file=sys.stderr)
    if n == 0:
        raise SystemExit(f"fix_data_dir: no utterance of {data_dir} is present in all of {utt_level}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--validate-only", "--validate_only", action="store_true")
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        raise SystemExit(f"fix_data_dir: '{args.data_dir}' is not a directory")
    if args.validate_only:
        problems = validate(args.data_dir)
        for p in problems:
            print(f"validate_data_dir: {p}", file=sys.stderr)
        sys.exit(1 if problems else 0)
    fix(args.data_dir)
    problems = validate(args.data_dir)
    for p in problems:
        print(f"fix_data_dir: still wrong after fixing: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
