"""Text longer than the model's positions, spoken piece by piece (offline and streaming).

``SLEDText2Speech`` cuts a long text with ``espnet2_sled.text_split.split_text`` (sentences,
then clauses, then words) into pieces that fit ``max_positions`` at a slow speaking rate.
``decode_pieces`` decodes them as batches and joins their frames (the audio is decoded
once from the joined frames); ``PiecewiseSession`` is the streaming session for any
length of text: one ``StreamingSession`` per piece, its chunks numbered and timed as one
stream. Text that fits is decoded exactly as before (one piece, the same frames).

Output that ends because the positions ran out, not because the stop head fired, is
reported with a ``CutOffWarning``; a streaming piece in which the model stopped before
reading all of its text is reported with an ``EarlyStopWarning``. Both paths fill a
``DecodeReport`` (``espnet2_sled/decode_report.py``): no frames at all is an
``EmptyOutputError``, pieces implausibly short for their text a ``ShortOutputWarning``.
"""

import re
import time
import warnings
from dataclasses import replace
from typing import Callable, Dict, Iterator, List, Optional

import torch

from espnet2_sled.decode_report import DecodeReport, PieceReport, ShortOutputWarning, quote
from espnet2_sled.streaming import Chunk, ClosableSession, StreamingSession
from espnet2_sled.text_split import sentence_ends, split_text

PIECE_BATCH = 8  # pieces of one long text decoded together


class CutOffWarning(UserWarning):
    """Output ended at the model's position limit instead of at the stop head."""


class EarlyStopWarning(ShortOutputWarning):
    """The model stopped before it had read all of the text (streaming)."""


def warn_cut_off(what: str, frames: int, max_positions: int) -> None:
    warnings.warn(
        f"{what}: output ended after {frames} frames because the model's {max_positions} positions "
        "were used up, not at the stop head; the end of the audio may be missing (use shorter "
        "sentences, or a model with more max_positions)",
        CutOffWarning, stacklevel=3,
    )


def stopped_at_head(stop_probs: torch.Tensor, stop_threshold: float) -> bool:
    """stop_probs ``[T]`` of every sampled step: did the stop head fire at one of them?"""
    return bool((stop_probs >= stop_threshold).any())


def decode_pieces(
    t2s, pieces: List[str], prompt_text: Optional[str], prompt_latents: Optional[torch.Tensor],
    noise, decode_conf: Dict, name: str = "text",
) -> Dict[str, torch.Tensor]:
    """pieces (``split_text``) -> one result dict: feat_gen ``[T, D]`` joined, wav, stop_probs, piece_frames ``[n]``,
    report (a ``DecodeReport``: ``EmptyOutputError`` if no piece has a frame, ``ShortOutputWarning``
    naming the pieces implausibly short for their text).

    Every piece is read as ``<s> prompt_text piece </s>`` followed by the prompt frames.
    ``max_frames`` caps each piece. Noise: ``noise`` (a generator) or ``seed`` as usual;
    an explicit noise tensor covers one piece only and is refused.
    """
    tts = t2s.tts
    if isinstance(noise, torch.Tensor):
        raise ValueError(f"{name} is spoken as {len(pieces)} pieces; give a seed or a torch.Generator, "
                         "not an explicit noise tensor")
    options = tts.decode_options(**{k: decode_conf.get(k) for k in ("cfg_scale", "stop_threshold", "keep_stop_frame",
                                                                  "decode_graph")})
    if noise is None and decode_conf.get("seed") is not None:
        noise = torch.Generator(device=t2s.device).manual_seed(int(decode_conf["seed"]))
    prefix = "" if prompt_latents is None else prompt_text.strip() + " "
    ids = [t2s.tokenize(prefix + piece, name=name) for piece in pieces]
    prompt_frames = 0 if prompt_latents is None else prompt_latents.shape[0]
    frames, stop_probs, piece_frames = [], [], []
    report = t2s.new_report(f"{name} {quote(' '.join(pieces))}", options["stop_threshold"], prompt_latents is not None)
    cap = decode_conf.get("max_frames")
    for start in range(0, len(ids), PIECE_BATCH):
        batch = ids[start : start + PIECE_BATCH]
        lengths = torch.tensor([len(x) for x in batch], device=t2s.device)
        text = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long, device=t2s.device)
        for b, x in enumerate(batch):
            text[b, : len(x)] = x.to(t2s.device)
        prompt = None if prompt_latents is None else prompt_latents[None].expand(len(batch), -1, -1).to(t2s.device)
        gen = tts.generate_batch(text, lengths, prompt, None, decode_conf.get("max_frames"), noise, **options)
        steps = gen.stop_probs.shape[1]
        budget = tts.max_positions - (int(lengths.max()) + 2) - prompt_frames
        for b in range(len(batch)):
            length = int(gen.lengths[b])
            frames.append(gen.frames[b, :length])
            stop_probs.append(gen.stop_probs[b, :length])
            piece_frames.append(length)
            tokens = len(t2s.tokenize(pieces[start + b], warn=False)) if prefix else len(batch[b])
            report.pieces.append(PieceReport(length, tokens, tokens, cap is not None and length >= cap))
            if steps == budget and not stopped_at_head(gen.stop_probs[b], options["stop_threshold"]):
                warn_cut_off(f"{name}, piece {start + b + 1} of {len(pieces)}", length, tts.max_positions)
    result = tts.outputs_for(torch.cat(frames), prompt_latents)
    result["stop_probs"] = torch.cat(stop_probs)
    result["piece_frames"] = torch.tensor(piece_frames)
    result["report"] = report.apply(stacklevel=4)
    return result


_COMPLETE_WORD = re.compile(r"\s*\S+\s")


class PiecewiseSession(ClosableSession):
    """What ``SLEDText2Speech.stream()`` returns: a streaming session for text of any length.

    Text is forwarded to the current piece's ``StreamingSession`` as it arrives while that
    piece is on its first sentence (so the first audio comes as early as before); after
    that, each further sentence is held until it is complete and then either joins the
    piece (if the piece still fits) or starts the next piece, which is how ``split_text``
    packs sentences offline. A sentence that is too long for a piece on its own is cut at
    clauses and words (a piece's first sentence, already being spoken, between words).
    """

    def __init__(
        self, new_session: Callable[[], StreamingSession], fits: Callable[[str], bool],
        check_text: Optional[Callable[[str], torch.Tensor]] = None, report: Optional[DecodeReport] = None,
        max_frames: Optional[int] = None,
    ):
        """new_session: a fresh ``StreamingSession`` (voice prompt already pushed); fits:
        ``SLEDText2Speech.piece_fits``; check_text: called with each piece's text once it is
        complete (``SLEDText2Speech.tokenize``, which warns about characters read as <unk>),
        returning its ids; a piece with none is refused before it is spoken. report: filled
        piece by piece and applied when the text ends (``EmptyOutputError`` /
        ``ShortOutputWarning``); max_frames: the caller's cap per piece (not short)."""
        self.new_session, self.fits, self.check_text = new_session, fits, check_text
        self.report, self.max_frames = report, max_frames
        self.piece_frames = 0  # frames emitted for the current piece
        self.early_stops: List[int] = []  # pieces named by an EarlyStopWarning
        self.session: Optional[StreamingSession] = None
        self.piece = ""  # text forwarded to the current session
        self.sentence = ""  # complete words of a held sentence, not yet forwarded
        self.held = ""  # text received and not yet split into words (a word may still grow)
        self.first_sentence_open = True  # the current piece is still on its first sentence
        self.pieces = 0
        self.tokens_read = 0  # text tokens (with markers) the model read, over finished pieces
        self.tokens_total = 0
        self.ended_early = False  # a finished piece stopped before reading all its text
        self.hit_position_limit = False
        self.chunks_emitted = 0
        self.text_ended = False
        self.finished = False
        self.closed = False
        self.has_text = False
        self.started = time.perf_counter()

    @property
    def stopped_early(self) -> bool:
        """A piece stopped (stop head or max_frames) before reading all its text; also
        true while the current piece has so stopped and waits for more text or the end."""
        return self.ended_early or (self.session is not None and self.session.stopped_early)

    # ------------------------------------------------------------------ public
    def push_text(self, text: str) -> Iterator[Chunk]:
        """Add text; returns the audio chunks this text makes ready (iterate it)."""
        self._check_open("push_text")
        if self.text_ended:
            raise RuntimeError("push_text after end_text: start a new session for new text")
        self.held += text
        self.has_text = self.has_text or bool(text.strip())
        return self._advance()

    def end_text(self) -> Iterator[Chunk]:
        """No more text: speak the rest (iterate it). Raises ``ValueError`` if no text was pushed."""
        self._check_open("end_text")
        if not self.text_ended and not self.has_text:
            raise ValueError("text is empty")
        self.text_ended = True
        return self._advance()

    def finish_early(self) -> None:
        """The current piece stopped before reading all its text and what follows is not to be
        spoken (the server ends such a stream at once): report it as ``end_text`` would --
        ``EarlyStopWarning``, then ``EmptyOutputError`` if no frame came at all."""
        if self.finished:
            return
        for _ in self._end_piece():
            pass  # a stopped session has no frame left to write
        self.finished = True
        if self.report is not None:
            self.report.apply(already_warned=self.early_stops)

    def close(self) -> None:
        """Release the KV cache; the session cannot be used afterwards."""
        if self.session is not None:
            self.session.close()
        self.closed = True

    # ------------------------------------------------------------------ pieces
    def _advance(self) -> Iterator[Chunk]:
        while not self.closed:
            match = _COMPLETE_WORD.match(self.held)
            if match is None:
                break
            word, self.held = match.group(), self.held[match.end() :]
            yield from self._take_word(word)
        if self.text_ended and not self.finished and not self.closed:
            if self.held.strip():
                word, self.held = self.held, ""
                yield from self._take_word(word + " ", last=True)
            if self.sentence.strip():
                yield from self._place_sentence()
            yield from self._end_piece()
            self.finished = True
            if self.report is not None:
                self.report.apply(already_warned=self.early_stops)  # EmptyOutputError / ShortOutputWarning

    def _take_word(self, word: str, last: bool = False) -> Iterator[Chunk]:
        ends = bool(sentence_ends(word.rstrip() + " ")) or last
        if self.first_sentence_open:
            yield from self._forward_words(word)
            if ends:
                self.first_sentence_open = False
        else:
            self.sentence += word
            if ends:
                yield from self._place_sentence()

    def _place_sentence(self) -> Iterator[Chunk]:
        sentence, self.sentence = self.sentence, ""
        if self.fits((self.piece + sentence).strip()):
            yield from self._forward(sentence)
            return
        yield from self._end_piece()
        parts = split_text(sentence, self.fits)
        for part in parts[:-1]:
            yield from self._forward(part + " ")
            yield from self._end_piece()
        yield from self._forward(parts[-1] + " ")
        self.first_sentence_open = False

    def _forward_words(self, word: str) -> Iterator[Chunk]:
        if self.piece.strip() and not self.fits((self.piece + word).strip()):
            yield from self._end_piece()  # a first sentence too long for one piece: cut between words
        if not self.fits(word.strip()):
            split_text(word, self.fits)  # raises, naming the word
        yield from self._forward(word)

    def _forward(self, text: str) -> Iterator[Chunk]:
        if self.session is None:
            self.session = self.new_session()
            self.pieces += 1
            self.piece_frames = 0
        self.piece += text
        yield from self._renumber(self.session.push_text(text))

    def _end_piece(self) -> Iterator[Chunk]:
        if self.session is None:
            return
        session, chunks, piece = self.session, self.session.end_text(), self.piece
        self.session, self.piece, self.first_sentence_open = None, "", True
        text_tokens = None
        if self.check_text is not None and piece.strip():
            text_tokens = len(self.check_text(piece.strip()))
            if text_tokens == 0:
                session.close()
                raise ValueError(f"streamed text {quote(piece)} is empty after tokenization: none of its characters "
                                 "are in the model's token list; write it in words the model knows")
        yield from self._renumber(chunks)
        self.tokens_read += session.num_read
        self.tokens_total += len(session.tokens)
        if self.report is not None and text_tokens is not None:
            if not self.report.pieces:
                self.report.what += f" {quote(piece)}"  # named by its first piece
            unread = len(session.tokens) - session.num_read  # of the text, and its </s>
            capped = self.max_frames is not None and self.piece_frames >= self.max_frames
            self.report.pieces.append(PieceReport(self.piece_frames, text_tokens,
                                                  max(0, min(text_tokens, text_tokens + 1 - unread)), capped))
        if session.stopped_early:
            self.early_stops.append(self.pieces)
            self.ended_early = True
            warnings.warn(
                f"streaming piece {self.pieces}: the model stopped after reading {session.num_read} of "
                f"{len(session.tokens)} text tokens; the rest of that text was not spoken "
                "(stream(allow_early_stop=False) makes it read all text before stopping)",
                EarlyStopWarning, stacklevel=2,
            )
        if getattr(session, "hit_position_limit", False):
            self.hit_position_limit = True
            warn_cut_off(f"streaming piece {self.pieces}", session.progress.sampled, session.tts.max_positions)
        session.close()

    def _renumber(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            chunk = replace(chunk, index=self.chunks_emitted, elapsed_seconds=time.perf_counter() - self.started)
            self.chunks_emitted += 1
            self.piece_frames += chunk.frames.shape[0]
            yield chunk


__all__ = ["CutOffWarning", "EarlyStopWarning", "PIECE_BATCH", "PiecewiseSession", "decode_pieces",
           "stopped_at_head", "warn_cut_off"]
