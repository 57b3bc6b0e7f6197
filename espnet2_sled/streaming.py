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
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional

import torch

from espnet2_sled.modules.generation import STOP_CHECK_EVERY, DecodingState, NoiseSource, draw_noise


@dataclass
class Chunk:
    frames: torch.Tensor  # [t, D] generated latent frames
    audio: Optional[torch.Tensor]  # [t * hop] waveform (None without a latent space)
    index: int  # chunk number, from 0
    compute_seconds: float  # model + decoder time spent on this chunk
    elapsed_seconds: float  # since the session started (time to this chunk's audio)


class StreamingSession:
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
        self.unchecked: List[torch.Tensor] = []  # stop probabilities [1] of the newest frames, not yet read
        self.check_every = STOP_CHECK_EVERY if fixed_shape else 1
        self.max_frames = max_frames if max_frames is not None else tts.max_positions
        self.audio_decoder = None
        if decode_audio and tts.latent_space is not None:
            self.audio_decoder = tts.latent_space.stream_decoder(1)
        self.forced = [] if prompt_latents is None else list(prompt_latents.to(self.device).unbind(0))
        self.buffer = ""  # text not yet tokenised (the word in progress)
        self.committed = ""  # text tokenised so far
        self.tokens = [tts.bos_id]
        self.num_read = 0
        self.pending: Optional[torch.Tensor] = None  # forced [1, D], not yet fed
        self.writes_left = 0  # frames still to write in this turn (None: until stop)
        self.sampled = 0  # frames sampled so far (the noise step index)
        self.chunk_frames: List[torch.Tensor] = []
        self.chunk_compute = 0.0
        self.chunks_emitted = 0
        self.text_ended = False
        self.finished = False
        self.stopped_early = False
        self.closed = False
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ text side
    def push_text(self, text: str) -> Iterator[Chunk]:
        """Add text; returns the audio chunks this text makes ready (iterate it)."""
        self._check_open("push_text")
        if self.text_ended:
            raise RuntimeError("push_text after end_text: start a new session for new text")
        self.buffer += text
        cut = max(self.buffer.rfind(" "), self.buffer.rfind("\n"), self.buffer.rfind("\t"))
        if cut >= 0:
            self._commit(self.buffer[: cut + 1])
            self.buffer = self.buffer[cut + 1 :]
        return self._run()

    def end_text(self) -> Iterator[Chunk]:
        """No more text: read the rest, write until the stop head fires (iterate it)."""
        self._check_open("end_text")
        if not self.text_ended:
            self._commit(self.buffer)
            self.buffer = ""
            self.tokens.append(self.tts.eos_id)
            self.text_ended = True
        return self._run()

    def close(self) -> None:
        """Release the KV cache; the session cannot be used afterwards."""
        self.closed = True
        self.state = None
        self.audio_decoder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self, what):
        if self.closed:
            raise RuntimeError(f"{what} on a closed streaming session")

    def _commit(self, text: str) -> None:
        self.committed += text
        ids = list(self.tokenize(self.committed.strip())) if self.committed.strip() else []
        tokens = [self.tts.bos_id] + [int(i) for i in ids]
        if tokens[: self.num_read] != self.tokens[: self.num_read]:
            raise RuntimeError(
                "the tokenizer changed tokens that were already read when more text arrived; "
                "push text in whole words (ending with a space)"
            )
        self.tokens = tokens

    # ------------------------------------------------------------------ schedule
    def _can_read(self) -> bool:
        unread = len(self.tokens) - self.num_read
        if unread == 0:
            return False
        if self.tokens_per_chunk is None:  # offline model: reads the whole text at once
            return self.text_ended
        return unread >= self.tokens_per_chunk or self.text_ended

    @torch.no_grad()
    def _run(self) -> Iterator[Chunk]:
        while not self.finished and not self.closed:
            if self.writes_left == 0:
                if self._can_read():
                    self._read()
                elif not (self.text_ended and self.num_read == len(self.tokens)):
                    return  # waiting for text
                all_read = self.text_ended and self.num_read == len(self.tokens)
                self.writes_left = None if all_read else self.frames_per_chunk
            chunk = self._write()
            if chunk is not None:
                yield chunk

    def _read(self) -> None:
        """Feed [pending frame] + the next tokens; the unconditional row sees only </s> + frames."""
        start = time.perf_counter()
        take = len(self.tokens) - self.num_read
        if self.tokens_per_chunk is not None:
            take = min(take, self.tokens_per_chunk)
        ids = torch.tensor(self.tokens[self.num_read : self.num_read + take], device=self.device)
        emb = self.lm.embed_tokens(ids)[None]  # [1, take, dim]
        visible = torch.ones(1, take, dtype=torch.bool, device=self.device)
        rows = self.state.last_hidden.shape[0]
        if rows == 2:
            uncond = emb.clone()
            uncond_visible = torch.zeros_like(visible)
            if self.num_read == 0:
                uncond[0, 0] = self.lm.embed_tokens.weight[self.tts.eos_id]
                uncond_visible[0, 0] = True
            emb, visible = torch.cat([emb, uncond]), torch.cat([visible, uncond_visible])
        if self.pending is not None:
            frame_emb = self.lm.frame_proj(self.pending.to(emb.dtype))[None].expand(rows, -1, -1)
            emb = torch.cat([frame_emb, emb], 1)
            visible = torch.cat([torch.ones(rows, 1, dtype=torch.bool, device=self.device), visible], 1)
            self.pending = None
        self._guard_capacity(emb.shape[1])
        self.state.feed(emb, visible)
        self.num_read += take
        self.chunk_compute += time.perf_counter() - start

    def _guard_capacity(self, slots: int) -> None:
        if self.state.length + slots > self.state.cache.capacity:
            raise RuntimeError(
                f"streaming session reached the model's {self.tts.max_positions} positions; "
                "split long text into several sessions (e.g. by sentence)"
            )

    def _write(self) -> Optional[Chunk]:
        """Write frames for this turn; returns a chunk once ``frames_per_chunk`` are ready."""
        while self.writes_left is None or self.writes_left > 0:
            start = time.perf_counter()
            if self.pending is not None:
                self._guard_capacity(1)
                self.state.feed_frames(self.pending[None])
                self.pending = None
            if self.forced:
                frame = self.forced.pop(0)[None]
                self._decode_audio(frame, keep=False)
                self.pending = frame
            else:
                noise = draw_noise(self.noise, self.sampled, 1, self.lm.noise_dim, self.device)
                self._guard_capacity(1)
                frame, stop_prob = self.state.step(noise, self.cfg_scale)  # sampled and fed back
                self.sampled += 1
                self.chunk_frames.append(frame.float())
                self.unchecked.append(stop_prob)
            if self.writes_left is not None:
                self.writes_left -= 1
            self.chunk_compute += time.perf_counter() - start
            if self.unchecked and self._stop_check_due() and self._stopped():
                return self._flush()
            if len(self.chunk_frames) >= self.frames_per_chunk:
                return self._flush()
        return None

    def _stop_check_due(self) -> bool:
        """Stop flags are read every ``check_every`` frames, and always before a chunk is
        emitted, before the next text is read, at max_frames and at the end of explicit noise."""
        noise_steps = self.noise.shape[1] if isinstance(self.noise, torch.Tensor) else None
        return (len(self.unchecked) >= self.check_every or len(self.chunk_frames) >= self.frames_per_chunk
                or self.writes_left == 0 or self.sampled >= self.max_frames
                or (noise_steps is not None and self.sampled >= noise_steps))

    def _stopped(self) -> bool:
        """Read the unchecked stop flags; on a stop (or max_frames) finish, dropping the frames
        sampled after the stop (and the stop frame unless ``keep_stop_frame``)."""
        probs = torch.cat(self.unchecked)  # [n], the last n entries of chunk_frames
        n, self.unchecked = probs.shape[0], []
        all_read = self.text_ended and self.num_read == len(self.tokens)
        hits = (probs >= self.stop_threshold).nonzero()
        stop = hits.shape[0] > 0 and (self.allow_early_stop or all_read)
        if not stop and self.sampled < self.max_frames:
            return False
        self.finished = True
        self.stopped_early = not all_read
        if stop:
            end = len(self.chunk_frames) - n + int(hits[0, 0]) + int(self.keep_stop_frame)
            self.chunk_frames = self.chunk_frames[:end]
        return True

    def _decode_audio(self, frames: torch.Tensor, keep: bool) -> Optional[torch.Tensor]:
        if self.audio_decoder is None:
            return None
        audio = self.audio_decoder.push(frames[None].float())[0]
        return audio if keep else None

    def _flush(self) -> Optional[Chunk]:
        if not self.chunk_frames:
            return None
        start = time.perf_counter()
        frames = torch.cat(self.chunk_frames)
        audio = self._decode_audio(frames, keep=True)
        compute = self.chunk_compute + time.perf_counter() - start
        chunk = Chunk(frames, audio, self.chunks_emitted, compute, time.perf_counter() - self.started)
        self.chunk_frames, self.chunk_compute = [], 0.0
        self.chunks_emitted += 1
        return chunk
