"""Incremental text in, audio out: ``StreamingSession``.

The model reads ``tokens_per_chunk`` tokens, then writes ``frames_per_chunk`` frames, and
repeats; once the whole text has been read it writes until the stop head fires. This is
the training layout of a streaming SLED (``layout: packed`` or ``upstream``), decoded with
the same ``DecodingState`` and ``SLEDLM.sample_frame`` as offline decoding. An offline
model can be streamed too: it reads the whole text at ``end_text`` and its audio still
comes out chunk by chunk.

    session = synthesizer.stream()
    for piece in llm_output:                  # text may arrive in any pieces
        for chunk in session.push_text(piece):
            play(chunk.audio)                 # [frames * hop] at chunk.sample_rate
    for chunk in session.end_text():
        play(chunk.audio)

Work happens while you iterate what ``push_text`` / ``end_text`` return (so the first
chunk plays while the next is computed); an iterator you do not finish leaves its work to
the next call. Text is tokenised up to the last whitespace only: a word may still grow.
"""

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional

import torch

from espnet2_sled.modules.generation import STOP_CHECK_EVERY, DecodingState, NoiseSource, draw_noise
from espnet2_sled.modules.layout import dropped_text, streaming_turn


@dataclass
class Chunk:
    frames: torch.Tensor  # [t, D] generated latent frames
    audio: Optional[torch.Tensor]  # [t * hop] waveform (None without a latent space)
    index: int  # chunk number, from 0
    compute_seconds: float  # model + decoder time spent on this chunk
    elapsed_seconds: float  # since the session started (time to this chunk's audio)


@dataclass
class Progress:
    """Everything a session changes as it runs (the model, options and caches are fixed).

    The sequence fed so far is the layout's turns (``modules/layout.streaming_turn``): the
    first ``num_read`` tokens, interleaved with the frames written; ``pending`` is a forced
    (voice-prompt) frame not yet fed (it precedes whatever comes next); sampled frames are
    fed back by the decode step itself (``DecodingState.step``)."""

    text: str = ""  # all text pushed; tokenised up to its last whitespace (a word may still grow)
    tokens: List[int] = field(default_factory=list)  # <s> + ids of the tokenised text (+ </s> once ended)
    num_read: int = 0  # tokens fed to the model
    text_ended: bool = False
    writes_left: Optional[int] = 0  # frames to write before the next read (None: until the stop)
    pending: Optional[torch.Tensor] = None  # [1, D] forced frame
    sampled: int = 0  # frames sampled so far (the noise step)
    finished: bool = False
    stopped_early: bool = False  # the stop head fired before the whole text was read
    hit_position_limit: bool = False  # ended because the positions ran out (not at the stop head)
    chunk_frames: List[torch.Tensor] = field(default_factory=list)  # written, not yet emitted
    unchecked: List[torch.Tensor] = field(default_factory=list)  # stop probs [1] of the newest frames, unread
    chunk_compute: float = 0.0  # seconds spent on them
    chunks_emitted: int = 0


class ClosableSession:
    """``with`` support and the closed-session check shared by ``StreamingSession`` and
    ``long_text.PiecewiseSession`` (a subclass defines ``close`` and ``closed``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self, what):
        if self.closed:
            raise RuntimeError(f"{what} on a closed streaming session")


class StreamingSession(ClosableSession):
    def __init__(
        self,
        tts,
        tokenize: Callable[[str], List[int]],
        cfg_scale: float = 2.0,
        stop_threshold: float = 0.8,
        keep_stop_frame: bool = False,
        max_frames: Optional[int] = None,
        noise: NoiseSource = None,
        prompt_latents: Optional[torch.Tensor] = None,
        allow_early_stop: bool = True,
        decode_audio: bool = True,
        decode_graph: Optional[bool] = None,
        fixed_shape: bool = True,
    ):
        """tts: a ``SLED`` model; tokenize: text -> ids without sentence markers.

        prompt_latents ``[P, D]``: a voice prompt whose transcript must be the first text
        pushed; its frames are forced into the schedule as if generated, and not emitted.
        ``decode_graph`` / ``fixed_shape``: how the decode step runs (``DecodingState``).
        """
        self.tts, self.lm, self.tokenize = tts, tts.lm, tokenize
        self.cfg_scale, self.stop_threshold, self.keep_stop_frame = cfg_scale, stop_threshold, keep_stop_frame
        self.noise, self.allow_early_stop = noise, allow_early_stop
        self.tokens_per_chunk = None if tts.layout == "offline" else tts.tokens_per_chunk
        self.frames_per_chunk = tts.frames_per_chunk
        param = next(self.lm.parameters())
        self.device = param.device
        rows = 2 if cfg_scale != 1.0 else 1
        self.state = DecodingState(self.lm, rows, tts.max_positions, self.device, param.dtype,
                                   fixed_shape, decode_graph)
        self.check_every = STOP_CHECK_EVERY if fixed_shape else 1  # stop flags read every k frames
        self.max_frames = max_frames if max_frames is not None else tts.max_positions
        self.audio_decoder = None
        if decode_audio and tts.latent_space is not None:
            self.audio_decoder = tts.latent_space.stream_decoder(1)
        self.forced = [] if prompt_latents is None else list(prompt_latents.to(self.device).unbind(0))
        self.progress = Progress(tokens=[tts.bos_id])
        self.started = time.perf_counter()

    # Read-only views of the progress.
    text_ended = property(lambda self: self.progress.text_ended)
    finished = property(lambda self: self.progress.finished)
    stopped_early = property(lambda self: self.progress.stopped_early)
    hit_position_limit = property(lambda self: self.progress.hit_position_limit)
    num_read = property(lambda self: self.progress.num_read)
    tokens = property(lambda self: self.progress.tokens)
    closed = property(lambda self: self.state is None)

    # ------------------------------------------------------------------ text side
    def push_text(self, text: str) -> Iterator[Chunk]:
        """Add text; returns the audio chunks this text makes ready (iterate it)."""
        self._check_open("push_text")
        if self.text_ended:
            raise RuntimeError("push_text after end_text: start a new session for new text")
        progress = self.progress
        progress.text += text
        if any(c in text for c in " \n\t"):
            cut = max(progress.text.rfind(" "), progress.text.rfind("\n"), progress.text.rfind("\t"))
            self._tokenize(progress.text[: cut + 1])
        return self._run()

    def end_text(self) -> Iterator[Chunk]:
        """No more text: read the rest, write until the stop head fires (iterate it)."""
        self._check_open("end_text")
        if not self.text_ended:
            self._tokenize(self.progress.text)
            self.progress.tokens.append(self.tts.eos_id)
            self.progress.text_ended = True
        return self._run()

    def close(self) -> None:
        """Release the KV cache; the session cannot be used afterwards."""
        self.state = None
        self.audio_decoder = None


    def _tokenize(self, committed: str) -> None:
        """tokens = <s> + ids of ``committed`` (the text up to a word boundary)."""
        ids = list(self.tokenize(committed.strip())) if committed.strip() else []
        tokens = [self.tts.bos_id] + [int(i) for i in ids]
        read = self.progress.num_read
        if tokens[:read] != self.progress.tokens[:read]:
            raise RuntimeError(
                "the tokenizer changed tokens that were already read when more text arrived; "
                "push text in whole words (ending with a space)"
            )
        self.progress.tokens = tokens

    # ------------------------------------------------------------------ schedule
    @torch.no_grad()
    def _run(self) -> Iterator[Chunk]:
        progress = self.progress
        while not progress.finished and not self.closed:
            if progress.writes_left == 0:
                turn = streaming_turn(progress.num_read, len(progress.tokens), progress.text_ended,
                                      self.tokens_per_chunk, self.frames_per_chunk)
                if turn is None:
                    return  # waiting for text
                take, progress.writes_left = turn
                if take:
                    self._read(take)
            chunk = self._write()
            if chunk is not None:
                yield chunk

    def _read(self, take: int) -> None:
        """Feed [pending frame] + the next ``take`` tokens (the unconditional row: ``dropped_text``)."""
        start = time.perf_counter()
        progress = self.progress
        ids = torch.tensor(progress.tokens[progress.num_read : progress.num_read + take], device=self.device)
        emb = self.lm.embed_tokens(ids)[None]  # [1, take, dim]
        visible = torch.ones(1, take, dtype=torch.bool, device=self.device)
        rows = self.state.last_hidden.shape[0]
        if rows == 2:
            uncond_visible, eos = (x.to(self.device) for x in dropped_text(take, progress.num_read == 0))
            eos_emb = self.lm.embed_tokens.weight[self.tts.eos_id]
            uncond = torch.where(eos[:, None], eos_emb, emb[0])[None]
            emb, visible = torch.cat([emb, uncond]), torch.cat([visible, uncond_visible[None]])
        if progress.pending is not None:
            frame_emb = self.lm.frame_proj(progress.pending.to(emb.dtype))[None].expand(rows, -1, -1)
            emb = torch.cat([frame_emb, emb], 1)
            visible = torch.cat([torch.ones(rows, 1, dtype=torch.bool, device=self.device), visible], 1)
            progress.pending = None
        self._guard_capacity(emb.shape[1])
        self.state.feed(emb, visible)
        progress.num_read += take
        progress.chunk_compute += time.perf_counter() - start

    def _guard_capacity(self, slots: int) -> None:
        if self.state.length + slots > self.state.cache.capacity:
            raise RuntimeError(
                f"streaming session reached the model's {self.tts.max_positions} positions; "
                "split long text into several sessions (e.g. by sentence)"
            )

    def _write(self) -> Optional[Chunk]:
        """Write frames for this turn; returns a chunk once ``frames_per_chunk`` are ready."""
        progress = self.progress
        while progress.writes_left is None or progress.writes_left > 0:
            start = time.perf_counter()
            if progress.pending is not None:
                self._guard_capacity(1)
                self.state.feed_frames(progress.pending[None])
                progress.pending = None
            if self.forced:
                frame = self.forced.pop(0)[None]
                self._decode_audio(frame, keep=False)
                progress.pending = frame
            else:
                if self.state.length + 1 > self.state.cache.capacity and self._all_read():
                    # All text read and the positions used up: end here, with as many frames
                    # as offline decoding (unless a stop flag not yet read ends it earlier).
                    if not (progress.unchecked and self._stopped()):
                        progress.finished = progress.hit_position_limit = True
                    return self._flush()
                noise = draw_noise(self.noise, progress.sampled, 1, self.lm.noise_dim, self.device)
                self._guard_capacity(1)
                frame, stop_prob = self.state.step(noise, self.cfg_scale)  # sampled and fed back
                progress.sampled += 1
                progress.chunk_frames.append(frame.float())
                progress.unchecked.append(stop_prob)
            if progress.writes_left is not None:
                progress.writes_left -= 1
            progress.chunk_compute += time.perf_counter() - start
            if progress.unchecked and self._stop_check_due() and self._stopped():
                return self._flush()
            if len(progress.chunk_frames) >= self.frames_per_chunk:
                return self._flush()
        return None

    def _all_read(self) -> bool:
        return self.progress.text_ended and self.progress.num_read == len(self.progress.tokens)

    def _stop_check_due(self) -> bool:
        """Stop flags are read every ``check_every`` frames, and always before a chunk is
        emitted, before the next text is read, at max_frames and at the end of explicit noise."""
        progress = self.progress
        noise_steps = self.noise.shape[1] if isinstance(self.noise, torch.Tensor) else None
        return (len(progress.unchecked) >= self.check_every or len(progress.chunk_frames) >= self.frames_per_chunk
                or progress.writes_left == 0 or progress.sampled >= self.max_frames
                or (noise_steps is not None and progress.sampled >= noise_steps))

    def _stopped(self) -> bool:
        """Read the unchecked stop flags; on a stop (or max_frames) finish, dropping the frames
        sampled after the stop (and the stop frame unless ``keep_stop_frame``)."""
        progress = self.progress
        probs = torch.cat(progress.unchecked)  # [n], the last n entries of chunk_frames
        n, progress.unchecked = probs.shape[0], []
        all_read = self._all_read()
        hits = (probs >= self.stop_threshold).nonzero()
        stop = hits.shape[0] > 0 and (self.allow_early_stop or all_read)
        if not stop and progress.sampled < self.max_frames:
            return False
        progress.finished = True
        progress.stopped_early = not all_read
        if stop:
            end = len(progress.chunk_frames) - n + int(hits[0, 0]) + int(self.keep_stop_frame)
            progress.chunk_frames = progress.chunk_frames[:end]
        return True

    def _decode_audio(self, frames: torch.Tensor, keep: bool) -> Optional[torch.Tensor]:
        if self.audio_decoder is None:
            return None
        audio = self.audio_decoder.push(frames[None].float())[0]
        return audio if keep else None

    def _flush(self) -> Optional[Chunk]:
        progress = self.progress
        if not progress.chunk_frames:
            return None
        start = time.perf_counter()
        frames = torch.cat(progress.chunk_frames)
        audio = self._decode_audio(frames, keep=True)
        compute = progress.chunk_compute + time.perf_counter() - start
        chunk = Chunk(frames, audio, progress.chunks_emitted, compute, time.perf_counter() - self.started)
        progress.chunk_frames, progress.chunk_compute = [], 0.0
        progress.chunks_emitted += 1
        return chunk
