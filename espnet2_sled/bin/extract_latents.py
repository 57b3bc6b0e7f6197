"""Extract SLED training latents from a Kaldi data dir into kaldiio ark/scp files.

One job (``--nj N --job J``, or ``--key_file`` with run.pl's JOB substituted) writes, in
``--output_dir``::

    feats.J.ark       float32 matrices [T, D], one per utterance
    feats.J.scp       "utt feats.J.ark:offset"   (ESPnet ``kaldi_ark`` input)
    speech_shape.J    "utt T,D"                  (ESPnet shape file)
    bad_utts.J        "utt<TAB>reason"           (only with --skip_bad true)
    latent.yaml       latent space name, conf, latent_dim, frame rate

``--merge true`` (after all jobs) writes ``feats.scp``, ``speech_shape`` and ``bad_utts``
in key order, checking that every utterance was extracted or logged as bad exactly once.
Without ``--job`` the whole data dir is one job and is merged at the end.

Resumable: an utterance's scp line is written only after its matrix is in the ark and the
ark is fsynced; a restarted job first cuts the ark back to the end of the last listed
matrix (dropping a half-written one) and skips every utterance already listed.

    python -m espnet2_sled.bin.extract_latents --data_dir data/train --output_dir dump/latents/train \\
        --latent encodec --weights random --nj 4 --job 1
    python -m espnet2_sled.bin.extract_latents --data_dir data/train --output_dir dump/latents/train \\
        --nj 4 --merge true
"""

import argparse
import io
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from espnet2.utils.types import str2bool

from espnet2_sled.fileio import AudioEntry, read_audio_table

log = logging.getLogger("extract_latents")


# ---------------------------------------------------------------------------- data dir
def read_data_dir(data_dir: Path) -> Dict[str, AudioEntry]:
    """``{utt: (audio path, start s, end s or None)}`` from ``wav.scp`` (+ ``segments``)."""
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise FileNotFoundError(f"{wav_scp} does not exist; expected a Kaldi data dir with wav.scp")
    segments = data_dir / "segments"
    return read_audio_table(wav_scp, segments if segments.is_file() else None)


def job_keys(keys: List[str], nj: int, job: int) -> List[str]:
    """Job ``job`` (1-based) of ``nj`` contiguous, near-equal slices of the sorted keys
    (the split_scp.pl way)."""
    if not 1 <= job <= nj:
        raise ValueError(f"--job {job} is outside 1..{nj} (--nj)")
    keys = sorted(keys)
    bounds = [len(keys) * i // nj for i in range(nj + 1)]
    return keys[bounds[job - 1]: bounds[job]]


# ---------------------------------------------------------------------------- job files
class JobWriter:
    """Appends utterances to one job's ark/scp/shape/bad files, resuming where a killed run stopped."""

    def __init__(self, output_dir: Path, tag: str):
        self.ark_path = output_dir / f"feats.{tag}.ark"
        self.scp_path = output_dir / f"feats.{tag}.scp"
        self.shape_path = output_dir / f"speech_shape.{tag}"
        self.bad_path = output_dir / f"bad_utts.{tag}"
        self.done: Dict[str, str] = {}  # utt -> scp value
        self.bad: Dict[str, str] = {}
        self._recover()
        self.ark = open(self.ark_path, "ab")
        self.scp = open(self.scp_path, "a")
        self.shape = open(self.shape_path, "a")
        self.bad_file = open(self.bad_path, "a")

    def _recover(self) -> None:
        """Keep complete scp lines, cut the ark after the last listed matrix, rebuild shapes."""
        import kaldiio

        for line in _complete_lines(self.scp_path):
            key, value = line.split(maxsplit=1)
            if key in self.done:
                raise RuntimeError(f"{self.scp_path} lists '{key}' twice; delete the job's files and rerun")
            self.done[key] = value
        shapes = {}
        for line in _complete_lines(self.shape_path):
            key, value = line.split(maxsplit=1)
            if key in self.done:
                shapes[key] = value
        for key in self.done.keys() - shapes.keys():  # killed between the shape and scp lines
            shapes[key] = ",".join(map(str, kaldiio.load_mat(self.done[key]).shape))
        ark_end = 0
        if self.done:  # the matrix at the largest offset ends the valid part of the ark
            last = max(self.done.values(), key=lambda value: int(value.rsplit(":", 1)[1]))
            ark_end = int(last.rsplit(":", 1)[1]) + len(_serialise(kaldiio.load_mat(last)))
        size = self.ark_path.stat().st_size if self.ark_path.exists() else 0
        if size < ark_end:
            raise RuntimeError(f"{self.ark_path} is shorter ({size} B) than {self.scp_path} says "
                               f"({ark_end} B); delete the job's files and rerun")
        with open(self.ark_path, "ab") as ark:
            ark.truncate(ark_end)
        _rewrite(self.scp_path, [f"{k} {v}\n" for k, v in self.done.items()])
        _rewrite(self.shape_path, [f"{k} {shapes[k]}\n" for k in self.done])
        for line in _complete_lines(self.bad_path):
            key, _, reason = line.partition("\t")
            self.bad[key] = reason
        _rewrite(self.bad_path, [f"{k}\t{r}\n" for k, r in self.bad.items()])

    def add(self, key: str, matrix: np.ndarray) -> None:
        """Append one ``[T, D]`` float32 matrix; its scp line appears only once it is on disk."""
        if key in self.done:
            raise RuntimeError(f"utterance '{key}' is already in {self.scp_path}")
        offset = self.ark.tell() + len(key.encode()) + 1
        self.ark.write(key.encode() + b" " + _serialise(matrix))
        self.ark.flush()
        os.fsync(self.ark.fileno())
        value = f"{self.ark_path}:{offset}"
        self.shape.write(f"{key} {matrix.shape[0]},{matrix.shape[1]}\n")
        self.shape.flush()
        self.scp.write(f"{key} {value}\n")
        self.scp.flush()
        os.fsync(self.scp.fileno())
        self.done[key] = value

    def add_bad(self, key: str, reason: str) -> None:
        self.bad_file.write(f"{key}\t{reason}\n")
        self.bad_file.flush()
        self.bad[key] = reason

    def close(self) -> None:
        for f in (self.ark, self.scp, self.shape, self.bad_file):
            f.close()


def _serialise(matrix: np.ndarray) -> bytes:
    from kaldiio.matio import write_array

    buffer = io.BytesIO()
    write_array(buffer, np.ascontiguousarray(matrix, dtype=np.float32))
    return buffer.getvalue()


def _complete_lines(path: Path) -> List[str]:
    """Lines ending in a newline (a killed writer may leave a partial last line)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [line for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


def _rewrite(path: Path, lines: List[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- extraction
def parse_conf(items: List[str]) -> dict:
    """``["key=value", ...]`` -> dict, values parsed as YAML scalars (``80`` -> int)."""
    import yaml

    conf = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--latent_conf {item!r}: expected key=value")
        key, value = item.split("=", 1)
        conf[key] = yaml.safe_load(value)
    return conf


def write_latent_yaml(output_dir: Path, name: str, conf: dict, space) -> None:
    import yaml

    info = {"latent": name, "latent_conf": {k: (str(v) if isinstance(v, Path) else v) for k, v in conf.items()},
            "latent_dim": int(space.latent_dim), "sample_rate": int(space.sample_rate),
            "hop_length": int(space.hop_length), "frame_rate": float(space.frame_rate)}
    if hasattr(space, "provenance"):
        info["weights_source"] = space.provenance.loaded_from
    tmp = output_dir / f"latent.yaml.{os.getpid()}.tmp"
    tmp.write_text(yaml.safe_dump(info, sort_keys=False))
    os.replace(tmp, output_dir / "latent.yaml")


def extract(args: argparse.Namespace, on_commit: Optional[Callable[[str], None]] = None) -> JobWriter:
    """Run one job. ``on_commit(utt)`` is called after each utterance is on disk (tests use it
    to simulate a kill)."""
    import torch
    from tqdm import tqdm

    from espnet2_sled.latent import build_latent_space
    from espnet2_sled.latent.audio import AudioError, load_audio

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = "cuda" if args.ngpu > 0 else args.device
    utts = read_data_dir(args.data_dir)
    if args.key_file:
        keys = [line.split()[0] for line in args.key_file.read_text().splitlines() if line.strip()]
        unknown = [k for k in keys if k not in utts]
        if unknown:
            raise ValueError(f"--key_file {args.key_file}: {len(unknown)} key(s) not in {args.data_dir}, "
                             f"e.g. '{unknown[0]}'")
    else:
        keys = job_keys(list(utts), args.nj, args.job or 1)
    conf = parse_conf(args.latent_conf)
    if args.weights is not None:
        conf["weights"] = args.weights
    space = build_latent_space(args.latent, **conf).to(device)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_latent_yaml(args.output_dir, args.latent, conf, space)
    writer = JobWriter(args.output_dir, str(args.job) if args.job else "all")
    todo = [k for k in keys if k not in writer.done and k not in writer.bad]
    min_samples = space.hop_length
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), unit="utt", file=sys.stderr,
               desc=f"extract {args.latent} job {args.job or 1}/{args.nj}")
    window = max(1, args.batch_size) * 8  # load this many, then batch by similar length
    try:
        for start in range(0, len(todo), window):
            loaded = []
            for key in todo[start: start + window]:
                path, begin, end = utts[key]
                try:
                    audio = load_audio(path, space.sample_rate, begin, end, name=key)
                    if len(audio) < min_samples:
                        raise AudioError(f"utterance '{key}' (file '{path}') is {len(audio)} samples at "
                                         f"{space.sample_rate} Hz, shorter than one frame ({min_samples})")
                except AudioError as e:
                    if not args.skip_bad:
                        raise AudioError(f"{e} (pass --skip_bad true to skip and log such utterances)") from e
                    log.warning("skipping: %s", e)
                    writer.add_bad(key, str(e))
                    bar.update(1)
                    continue
                loaded.append((key, audio))
            loaded.sort(key=lambda item: len(item[1]))
            alone = getattr(space, "min_batch_frames", 0) * space.hop_length
            for batch in _batches(loaded, args.batch_size, args.batch_seconds * space.sample_rate, alone):
                for key, matrix in zip([k for k, _ in batch], _encode(space, batch, device)):
                    writer.add(key, matrix)
                    bar.update(1)
                    if on_commit:
                        on_commit(key)
    finally:
        bar.close()
        writer.close()
    return writer


def _batches(items, batch_size: int, max_samples: float, alone_below: int = 0):
    """Length-sorted ``(key, audio)`` -> batches of at most ``batch_size`` and ``max_samples``
    padded samples; items shorter than ``alone_below`` samples form batches of one."""
    batch: list = []
    for item in items:
        if len(item[1]) < alone_below:
            yield [item]
            continue
        if batch and (len(batch) == batch_size or len(item[1]) * (len(batch) + 1) > max_samples):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _encode(space, batch, device) -> List[np.ndarray]:
    """Zero-pad the batch to a whole number of frames of the longest item, encode, and cut each
    utterance back to its own ``ceil(S / hop)`` frames (causal encoder: padding is invisible)."""
    import torch

    hop = space.hop_length
    frames = [-(-len(audio) // hop) for _, audio in batch]
    audio = torch.zeros(len(batch), max(frames) * hop)
    for row, (_, samples) in enumerate(batch):
        audio[row, : len(samples)] = torch.from_numpy(samples)
    latents = space.encode(audio.to(device)).float().cpu().numpy()
    return [latents[row, :count] for row, count in enumerate(frames)]


# ---------------------------------------------------------------------------- merge
def merge(args: argparse.Namespace) -> None:
    """Concatenate job parts into feats.scp / speech_shape / bad_utts (key order), checking
    that every utterance of the data dir appears exactly once across scp and bad lists."""
    out = args.output_dir
    tags = [str(j) for j in range(1, args.nj + 1)] if args.nj > 1 or (out / "feats.1.scp").exists() else ["all"]
    scp, shape, bad = {}, {}, {}
    for tag in tags:
        part = out / f"feats.{tag}.scp"
        if not part.exists():
            raise FileNotFoundError(f"{part} is missing: job {tag} has not run (rerun it, it resumes)")
        for table, path, sep in ((scp, part, None), (shape, out / f"speech_shape.{tag}", None),
                                 (bad, out / f"bad_utts.{tag}", "\t")):
            for line in _complete_lines(path):
                key, value = line.split(sep, 1) if sep else line.split(maxsplit=1)
                if key in table:
                    raise RuntimeError(f"utterance '{key}' appears in more than one job part ({path})")
                table[key] = value
    expected = set(read_data_dir(args.data_dir))
    missing = sorted(expected - set(scp) - set(bad))
    if missing:
        raise RuntimeError(f"{len(missing)} utterance(s) of {args.data_dir} were not extracted, e.g. "
                           f"'{missing[0]}'; rerun the unfinished job(s) (they resume)")
    if set(shape) != set(scp):
        raise RuntimeError(f"speech_shape parts and feats parts in {out} disagree; rerun the jobs")
    _rewrite(out / "feats.scp", [f"{k} {scp[k]}\n" for k in sorted(scp)])
    _rewrite(out / "speech_shape", [f"{k} {shape[k]}\n" for k in sorted(shape)])
    _rewrite(out / "bad_utts", [f"{k}\t{bad[k]}\n" for k in sorted(bad)])
    log.info("merged %d utterances (%d bad) into %s", len(scp), len(bad), out / "feats.scp")


# ---------------------------------------------------------------------------- CLI
def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir (wav.scp [, segments])")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--latent", default="encodec", choices=["encodec", "mel"])
    parser.add_argument("--latent_conf", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="constructor options of the latent space, e.g. n_mels=80 stack=3 (mel)")
    parser.add_argument("--weights", default=None,
                        help="encodec weights: PATH (.th or HF dir) or 'random' (tests only); "
                             "default: the offline caches")
    parser.add_argument("--nj", type=int, default=1, help="number of jobs the keys are split into")
    parser.add_argument("--job", type=int, default=None, help="this job, 1..nj (run.pl JOB)")
    parser.add_argument("--key_file", type=Path, default=None,
                        help="process exactly these keys (first column), e.g. split/keys.JOB")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--batch_seconds", type=float, default=240.0,
                        help="cap on padded audio seconds per batch (memory)")
    parser.add_argument("--skip_bad", type=str2bool, default=False,
                        help="skip missing/corrupt/empty/too-short audio and segments past the end of their file, "
                             "and list them in bad_utts.J")
    parser.add_argument("--merge", type=str2bool, default=False, help="merge the job parts and exit")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ngpu", type=int, default=0, help="1: use cuda (ESPnet convention)")
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (extract_latents) %(levelname)s %(message)s")
    args = get_parser().parse_args(argv)
    if args.merge:
        merge(args)
        return
    if args.weights is not None and args.latent != "encodec":
        log.info("--latent %s has no weights; ignoring --weights %s", args.latent, args.weights)
        args.weights = None
    writer = extract(args)
    log.info("job %s: %d utterances in %s, %d bad", args.job or "all", len(writer.done), writer.scp_path,
             len(writer.bad))
    if args.job is None and args.key_file is None:
        merge(args)


if __name__ == "__main__":
    main()
