#!/usr/bin/env python3
"""``python -m espnet2_sled.bin.sled_inference``: ESPnet-style decoding of a data dir with SLED.

Same inputs and outputs as ``espnet2.bin.tts_inference`` (``wav/``, ``norm/feats.scp``,
``speech_shape``) plus ``timing.jsonl`` (compute seconds, RTF, time to first audio), and
SLED's options. Modes: batched offline (default), ``--streaming true``, voice cloning
(``--prompt_wav_scp`` + ``--prompt_text``) and ``--continuation_seconds 3``.

Never silent (``espnet2_sled/decode_report.py``): every text is tokenized and split before
the first decode (a text the model cannot read stops the run with no output written);
each utterance's ``report`` (frames per text token, short pieces) goes to timing.jsonl,
an implausibly short one is logged beside its key (``ShortOutputWarning``), and one with
no frames at all gets no output file: the run ends with exit 1 naming those keys (exit 0
with ``--allow_empty_output true``, as the recipe's stage 7 runs it: scoring counts them).
"""

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import kaldiio
import numpy as np
import torch
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none
from tqdm import tqdm

import espnet2_sled.registry  # noqa: F401  (tts: sled for ESPnet's model builder)
from espnet2_sled.bin.decode_output import OutputWriter, check_texts, logged_warnings, read_table, read_texts
from espnet2_sled.decode_report import EmptyOutputError, PieceReport, quote
from espnet2_sled.long_text import stopped_at_head, warn_cut_off
from espnet2_sled.tasks.sled import SLEDTask
from espnet2_sled.text2speech import DECODE_OPTIONS, SLEDText2Speech, check_finite_prompt, read_prompt_audio  # noqa: F401 (re-exported)


def get_parser() -> argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="SLED decoding (ESPnet tts_inference options + SLED's)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # "--cfg_scal 3" is an error, not --cfg_scale
    )
    parser.add_argument("--log_level", default="INFO", choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"))
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=1, help="utterances decoded together (offline mode)")
    group = parser.add_argument_group("Input data")
    group.add_argument("--data_path_and_name_and_type", type=str2triple_str, required=True, action="append")
    group.add_argument("--key_file", type=str_or_none)
    group = parser.add_argument_group("Model")
    group.add_argument("--train_config", type=str_or_none)
    group.add_argument("--model_file", type=str_or_none)
    group.add_argument("--model_tag", type=str_or_none, help="packed zip / model zoo tag instead of the two above")
    group = parser.add_argument_group("SLED decoding")
    group.add_argument("--cfg_scale", type=float, default=None, help="guidance scale (model default 2.0; 1 = off)")
    group.add_argument("--stop_threshold", type=float, default=None, help="stop when p(stop) >= this (model default)")
    group.add_argument("--max_frames", type=int, default=None, help="cap on generated frames per utterance")
    group.add_argument("--seed", type=int, default=0, help="noise seed; utterance i uses seed + i")
    group.add_argument("--keep_stop_frame", type=str2bool, default=None)
    group.add_argument("--use_teacher_forcing", type=str2bool, default=False, help="resynthesise the 'speech' latents")
    group.add_argument("--allow_empty_output", type=str2bool, default=False,
                       help="an utterance with no frames is logged and gets no file either way; true: exit 0 "
                            "(evaluation: the recipe's scoring counts it as missing audio), false: exit 1")
    group = parser.add_argument_group("Speed")
    group.add_argument("--decode_graph", type=str2bool, default=None,
                       help="replay the decode step as a CUDA graph (default: on with a GPU, off on CPU)")
    group.add_argument("--decode_backend", default=None, choices=["torch", "onnxruntime"],
                       help="onnxruntime: the decode step through the CPU decode engine (espnet2_sled/engine; "
                            "needs pip install -e \".[cpu_engine]\"), default torch")
    group.add_argument("--quantize", default="none", choices=["none", "int8", "int4"],
                       help="int8: int8 linears in the decoder and generator (CPU only; PyTorch's, or the engine's "
                            "with --decode_backend onnxruntime); int4: 4-bit weights (engine only); "
                            "drift in modules/precision.py and engine/export.py")
    group.add_argument("--decode_dtype", default="float32", choices=["float32", "bfloat16"],
                       help="bfloat16: bf16 backbone, fp32 generator output / stop head / latent decoder (for GPUs)")
    group = parser.add_argument_group("Streaming")
    group.add_argument("--streaming", type=str2bool, default=False, help="decode through a StreamingSession")
    group.add_argument("--stream_text_by", default="whole", choices=["whole", "word", "char"],
                       help="how the text is pushed into the session (simulates an incremental source)")
    group = parser.add_argument_group("Voice prompts")
    group.add_argument("--prompt_wav_scp", type=str_or_none, help="key -> prompt audio path (voice cloning)")
    group.add_argument("--prompt_text", type=str_or_none, help="key -> transcript of the prompt audio")
    group.add_argument("--continuation_seconds", type=float, default=None,
                       help="continue each utterance from its own first N seconds ('speech' latents input)")
    group.add_argument("--keep_prompt_audio", type=str2bool, default=False,
                       help="continuation: keep the resynthesised prefix in the output wav (upstream eval does)")
    return parser


def inference(args: argparse.Namespace) -> None:
    device = "cuda" if args.ngpu > 0 else "cpu"
    t2s = SLEDText2Speech.from_pretrained(
        args.model_tag, train_config=args.train_config, model_file=args.model_file, cfg_scale=args.cfg_scale,
        stop_threshold=args.stop_threshold, max_frames=args.max_frames, keep_stop_frame=args.keep_stop_frame,
        use_teacher_forcing=args.use_teacher_forcing, device=device, dtype=args.dtype,
        decode_graph=args.decode_graph, quantize=args.quantize, decode_dtype=args.decode_dtype,
        decode_backend=args.decode_backend,
    )
    inputs = {name: (path, kind) for path, name, kind in args.data_path_and_name_and_type}
    if "text" not in inputs:
        raise ValueError("give the text: --data_path_and_name_and_type data/<set>/text,text,text")
    if (args.use_teacher_forcing or args.continuation_seconds) and "speech" not in inputs:
        raise ValueError("this mode needs latents: --data_path_and_name_and_type dump/.../feats.scp,speech,kaldi_ark")
    texts = read_texts(inputs["text"][0])  # before any decoding: an empty line is named
    if not args.use_teacher_forcing:
        keys = list(read_table(args.key_file, "key file")) if args.key_file else sorted(texts)
        check_texts(t2s, texts, keys, inputs["text"][0])
    writer = OutputWriter(Path(args.output_dir), t2s.fs)
    try:
        if args.streaming or args.prompt_wav_scp or args.continuation_seconds:
            decode_one_by_one(t2s, inputs, texts, writer, args)
        else:
            decode_batches(t2s, texts, writer, args)
    finally:
        writer.close()
    if writer.refused and not args.allow_empty_output:
        keys = sorted(writer.refused)
        raise EmptyOutputError(
            f"{len(keys)} utterance(s) produced no audio and have no output files: {', '.join(keys[:10])}"
            f"{' ...' if len(keys) > 10 else ''} (why: the log and timing.jsonl); the other {len(writer.written)} "
            f"are in {args.output_dir}/wav")


def decode_one_by_one(t2s: SLEDText2Speech, inputs, texts: Dict[str, str], writer: OutputWriter, args) -> None:
    keys = list(read_table(args.key_file, "key file")) if args.key_file else sorted(texts)
    prompts = read_table(args.prompt_wav_scp, "prompt wav.scp") if args.prompt_wav_scp else None
    prompt_texts = read_table(args.prompt_text, "prompt text file") if args.prompt_text else None
    if prompts is not None and prompt_texts is None:
        raise ValueError("--prompt_wav_scp needs --prompt_text (the transcripts of the prompts)")
    if prompts is not None:  # every prompt file is checked before anything is decoded
        for path in sorted({prompts[key] for key in keys if key in prompts}):
            read_prompt_audio(path)
    latents = kaldiio.load_scp(inputs["speech"][0]) if "speech" in inputs else None
    for index, key in enumerate(tqdm(keys, desc="decoding", unit="utt")):
        if key not in texts:
            raise KeyError(f"utterance '{key}' has no text in {inputs['text'][0]}")
        seed = args.seed + index
        prompt_kwargs: Dict[str, Any] = {}
        if prompts is not None:
            if key not in prompts or key not in prompt_texts:
                raise KeyError(f"utterance '{key}' has no prompt in {args.prompt_wav_scp} / {args.prompt_text}")
            prompt_kwargs = dict(prompt_audio=prompts[key], prompt_text=prompt_texts[key])
        start = time.perf_counter()
        try:
            with logged_warnings(key):
                if args.streaming:
                    result, timing = decode_streaming(t2s, texts[key], prompt_kwargs, seed, args.stream_text_by)
                elif args.continuation_seconds:
                    result, timing = decode_continuation(t2s, texts[key], latents[key], seed, args, key)
                else:
                    result = t2s(texts[key], seed=seed, **prompt_kwargs)
                    timing = dict(compute_seconds=time.perf_counter() - start)
        except EmptyOutputError as e:
            writer.refuse(key, e)
            continue
        writer.write(key, result, timing)


def decode_streaming(t2s: SLEDText2Speech, text: str, prompt_kwargs, seed: int, push_by: str):
    prompt = {}
    if prompt_kwargs:
        prompt = dict(voice_prompt=prompt_kwargs["prompt_audio"], prompt_text=prompt_kwargs["prompt_text"])
    start = time.perf_counter()
    session = t2s.stream(seed=seed, **prompt)
    pieces = [text] if push_by == "whole" else (list(text) if push_by == "char" else [w + " " for w in text.split()])
    chunks = []
    for piece in pieces:
        chunks += list(session.push_text(piece))
    chunks += list(session.end_text())
    total = time.perf_counter() - start
    session.close()
    frames = torch.cat([c.frames for c in chunks]) if chunks else torch.zeros(0, t2s.tts.odim)
    result = dict(feat_gen=frames, report=session.report)
    if chunks and chunks[0].audio is not None:
        result["wav"] = torch.cat([c.audio for c in chunks])
    timing = dict(
        compute_seconds=total,
        first_audio_seconds=chunks[0].elapsed_seconds if chunks else None,
        chunk_compute_seconds=[round(c.compute_seconds, 5) for c in chunks],
        stopped_early=session.stopped_early,
        tokens_read=session.tokens_read,
        tokens_total=session.tokens_total,
        pieces=session.pieces,
    )
    return result, timing  # an early stop is reported by the session's EarlyStopWarning, logged beside the key


def decode_continuation(t2s: SLEDText2Speech, text: str, latents: np.ndarray, seed: int, args, key: str = "?"):
    tts = t2s.tts
    frames = int(round(args.continuation_seconds * tts.latent_frame_rate))
    prefix = torch.as_tensor(latents[:frames], dtype=torch.float32, device=t2s.device)
    check_finite_prompt(prefix, f"the first {args.continuation_seconds} s of the latents of utterance '{key}'")
    start = time.perf_counter()
    # The text is the utterance's full transcript; the prefix is its own first seconds.
    ids = t2s.tokenize(text).to(t2s.device)
    result = tts.inference(ids, prompt_latents=prefix, seed=seed, decode_wav=False,
                           **{k: v for k, v in t2s.decode_conf.items() if k != "seed"})
    frames, cap = result["feat_gen"].shape[0], t2s.decode_conf.get("max_frames")
    result["report"] = t2s.report_one_piece(f"text {quote(text)}", frames, len(ids),
                                            t2s.decode_conf.get("stop_threshold"), voice_prompt=False,
                                            capped=cap is not None and frames >= cap)
    if tts.latent_space is not None:
        if args.keep_prompt_audio:
            result["wav"] = tts.latent_space.decode(torch.cat([prefix, result["feat_gen"]])[None])[0]
        else:
            result["wav"] = tts.frames_to_wav(result["feat_gen"], prefix)
    return result, dict(compute_seconds=time.perf_counter() - start)


def decode_batches(t2s: SLEDText2Speech, texts: Dict[str, str], writer: OutputWriter, args) -> None:
    names = [name for _, name, _ in args.data_path_and_name_and_type]
    if args.use_teacher_forcing and "speech" not in names:
        raise ValueError("--use_teacher_forcing needs a 'speech' input")
    loader = SLEDTask.build_streaming_iterator(
        args.data_path_and_name_and_type, dtype=args.dtype, batch_size=args.batch_size, key_file=args.key_file,
        num_workers=args.num_workers, preprocess_fn=SLEDTask.build_preprocess_fn(t2s.train_args, False),
        collate_fn=SLEDTask.build_collate_fn(t2s.train_args, False), allow_variable_data_keys=False, inference=True,
    )
    index = 0
    for keys, batch in tqdm(loader, desc="decoding", unit="batch"):
        start = time.perf_counter()
        results = decode_batch(t2s, keys, batch, args, index, texts)
        per_utt = (time.perf_counter() - start) / len(keys)
        for key, result in zip(keys, results):
            if isinstance(result, EmptyOutputError):
                writer.refuse(key, result)
            else:
                writer.write(key, result, dict(compute_seconds=per_utt, batch_size=len(keys)))
        index += len(keys)


def decode_batch(t2s: SLEDText2Speech, keys: Sequence[str], batch: Dict[str, torch.Tensor], args, index: int,
                 texts: Optional[Dict[str, str]] = None):
    tts = t2s.tts
    text, text_lengths = batch["text"].to(t2s.device), batch["text_lengths"].to(t2s.device)
    if args.use_teacher_forcing:
        return [tts.inference(text[b, : text_lengths[b]], feats=batch["speech"][b, : batch["speech_lengths"][b]],
                              use_teacher_forcing=True) for b in range(len(keys))]
    # Text longer than the model's positions is spoken in pieces by the API
    # (espnet2_sled/long_text.py); the other rows are decoded together here.
    results: List[Optional[Dict[str, torch.Tensor]]] = [None] * len(keys)
    rows = []
    for b, key in enumerate(keys):
        if texts is None or key not in texts:
            rows.append(b)
            continue
        try:
            with logged_warnings(key):
                t2s.tokenize(texts[key], name="text")  # warns about characters read as <unk>
                if len(t2s.split_text(texts[key])) > 1:
                    results[b] = t2s(texts[key], seed=args.seed + index + b)
                else:
                    rows.append(b)
        except EmptyOutputError as e:
            results[b] = e
    if not rows:
        return results
    if len(rows) < len(keys):
        picked = torch.tensor(rows, device=text.device)
        text_lengths = text_lengths[picked]
        text = text[picked, : int(text_lengths.max())]
    # Per-utterance noise streams (seed + utterance index): a row's audio does not depend
    # on the batch it happens to be decoded in.
    budget = tts.max_positions - int(text_lengths.max()) - 2
    max_frames = t2s.decode_conf.get("max_frames") or budget
    noise = torch.stack([
        torch.randn(max_frames, tts.lm.noise_dim, generator=torch.Generator().manual_seed(args.seed + index + b))
        for b in rows
    ]).to(t2s.device)
    options = {k: v for k, v in t2s.decode_conf.items()
               if k in ("cfg_scale", "stop_threshold", "keep_stop_frame", "decode_graph")}
    gen = tts.generate_batch(text, text_lengths, max_frames=max_frames, noise=noise, **options)
    threshold = tts.decode_options(**options)["stop_threshold"]
    cap = t2s.decode_conf.get("max_frames")
    for i, b in enumerate(rows):
        frames = gen.frames[i, : int(gen.lengths[i])]
        what = f"text {quote(texts[keys[b]])}" if texts is not None and keys[b] in texts else "text"
        report = t2s.new_report(what, threshold, voice_prompt=False)
        tokens = int(text_lengths[i])
        report.pieces.append(PieceReport(frames.shape[0], tokens, tokens, cap is not None and frames.shape[0] >= cap))
        try:
            with logged_warnings(keys[b]):
                if gen.stop_probs.shape[1] == budget and not stopped_at_head(gen.stop_probs[i], threshold):
                    warn_cut_off("text", frames.shape[0], tts.max_positions)
                results[b] = dict(tts.outputs_for(frames), report=report.apply())  # EmptyOutputError: no output
        except EmptyOutputError as e:
            results[b] = e
    return results


def main(cmd=None):
    print(" ".join(sys.argv), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        inference(args)
    except EmptyOutputError as e:  # the keys were logged one by one as they failed
        logging.error(str(e))
        sys.exit(1)


if __name__ == "__main__":
    main()
