"""Autoregressive decoding: one state object and one step, shared by every mode.

Offline, batched, voice-cloned and streaming decoding differ only in *what* they feed
(``DecodingState.feed``) and *when* they sample (``SLEDLM.sample_frame``); the KV cache is
preallocated once and written in place (no per-step copy of past keys/values).

With classifier-free guidance the batch is doubled: rows [B, 2B) see the same slots but
their text is hidden except the boundary ``</s>`` (speech prompts stay visible).

The decode step (``DecodingState.step``: sample a frame, feed it back) has the same tensor
shapes every time (``Decoder.step``: device write index, in-place mask, a fixed attention
window), so it is replayed as a captured CUDA graph (``decode_graph``, on by default on
CUDA) or compiled (``decode_graph=True`` on CPU). Stop flags are read every
``STOP_CHECK_EVERY`` steps, not every step; frames sampled past a row's stop are dropped,
so the output does not change. Prefill and text feeds stay eager (variable shapes).
"""

from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import torch

from espnet2_sled.modules.layout import build_layout
from espnet2_sled.modules.sled_lm import SLEDLM

NoiseSource = Union[None, torch.Generator, torch.Tensor]

# Stop flags are read (a host sync) once per this many steps; at most this many - 1 steps
# run past the last row's stop, and their frames are dropped.
STOP_CHECK_EVERY = 8


class DecodingState:
    """KV cache + the hidden state at each row's last visible slot + next RoPE position.

    ``fixed_shape=False`` runs the step as an eager variable-shape feed (the reference the
    tests compare with). ``decode_graph`` (None: on for CUDA, off for CPU) replays the
    fixed-shape step as a CUDA graph on CUDA; on CPU, True compiles it with
    ``torch.compile`` (inductor: a C++ build, minutes on a small CPU, so off by default) and
    a string names another ``torch.compile`` backend (the tests use ``"aot_eager"``).
    """

    def __init__(self, lm: SLEDLM, rows: int, capacity: int, device, dtype,
                 fixed_shape: bool = True, decode_graph: Union[None, bool, str] = None):
        self.lm = lm
        if not lm.training:
            lm.decoder.pack()  # q | k | v and gate | up as one matmul each (modules/packed.py)
        self.cache = lm.decoder.new_cache(rows, capacity, device, dtype)
        self.last_hidden = torch.zeros(rows, lm.decoder.dim, device=device, dtype=dtype)
        self.next_position = torch.zeros(rows, dtype=torch.long, device=device)
        self.fixed_shape = fixed_shape
        self.decode_graph = torch.device(device).type == "cuda" if decode_graph is None else decode_graph
        self.graphs: Dict[Tuple[int, float], "CapturedStep"] = {}
        # The step through the CPU decode engine (engine/session.py), when one is attached to the model.
        self.engine = getattr(lm, "decode_engine", None) if fixed_shape else None
        self.engine_run = None

    @property
    def length(self) -> int:
        return self.cache.length

    def feed(self, x: torch.Tensor, visible: torch.Tensor) -> None:
        """Append slots. x ``[R, l, dim]`` un-normalised embeddings, visible ``[R, l]`` bool."""
        positions = self.next_position[:, None] + (visible.long().cumsum(1) - 1).clamp(min=0)
        h = self.lm.decoder(self.lm.input_norm(x), positions, visible, self.cache)  # [R, l, dim]
        slots = visible.shape[1]
        last = slots - 1 - visible.flip(1).long().argmax(1)  # last visible slot of each row
        rows = torch.arange(h.shape[0], device=h.device)
        has_visible = visible.any(1)[:, None]
        # In place: a captured step reads these buffers at fixed addresses.
        self.last_hidden.copy_(torch.where(has_visible, h[rows, last].to(self.last_hidden.dtype), self.last_hidden))
        self.next_position += visible.long().sum(1)

    def feed_frames(self, frames: torch.Tensor) -> None:
        """frames ``[B, l, D]`` appended to every row (both CFG branches)."""
        emb = self.lm.frame_proj(frames.to(self.lm.frame_proj.weight.dtype))
        rows = self.last_hidden.shape[0]
        emb = emb.repeat(rows // emb.shape[0], 1, 1)
        self.feed(emb, torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device))

    # ------------------------------------------------------------------ the decode step
    @torch.no_grad()  # decoding never needs gradients; a graph must not record autograd
    def step(self, noise: torch.Tensor, cfg_scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample one frame per row from the last hidden states and feed it back.

        noise ``[B, noise_dim]`` -> (frame ``[B, D]``, stop probability ``[B]``), fresh
        tensors. Needs one free slot (the frame is fed even if it turns out to be the last).
        """
        if not self.fixed_shape:
            frame, stop_prob = self.lm.sample_frame(self.last_hidden, noise, cfg_scale)
            self.feed_frames(frame[:, None])
            return frame, stop_prob
        self.cache.check_room(1)
        window = self.cache.window(self.cache.length + 1)
        if self.engine is not None:
            if self.engine_run is None:
                self.engine_run = self.engine.start(self, noise.shape[0])
            frame, stop_prob = self.engine_run(noise, cfg_scale, window)
        elif not self.decode_graph:
            frame, stop_prob = self.fixed_step(noise, cfg_scale, window)
        else:
            key = (window, float(cfg_scale))
            if key not in self.graphs:
                self.graphs[key] = CapturedStep(self, cfg_scale, window)
            frame, stop_prob = self.graphs[key](noise)
        self.cache.length += 1
        return frame, stop_prob

    def fixed_step(self, noise: torch.Tensor, cfg_scale: float, window: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The step's body: only fixed shapes and device values (``Decoder.step``)."""
        lm = self.lm
        frame, stop_prob = lm.sample_frame(self.last_hidden, noise, cfg_scale)
        emb = lm.frame_proj(frame.to(lm.frame_proj.weight.dtype))  # [B, dim]
        emb = emb.repeat(self.last_hidden.shape[0] // emb.shape[0], 1)  # both CFG branches
        h = lm.decoder.step(lm.input_norm(emb)[:, None], self.next_position[:, None], self.cache, window)
        self.last_hidden.copy_(h[:, 0].to(self.last_hidden.dtype))
        self.next_position.add_(1)
        return frame, stop_prob


class CapturedStep:
    """``DecodingState.fixed_step`` for one (window, cfg_scale), captured once, then replayed.

    CUDA: a ``torch.cuda.CUDAGraph`` captured directly rather than
    ``torch.compile(mode="reduce-overhead")``: the step's whole state (KV cache, mask,
    write index, positions, last hidden) already lives in buffers at fixed addresses, so
    capturing is one recorded step (milliseconds, not a compilation of tens of seconds:
    a streaming session's time to first audio cannot pay for a compile), it needs no
    Triton, and there is no recompilation per batch size or window. The first call of a
    window runs eagerly on a side stream (CUDA's warm-up) and does that step's real work;
    the graph is captured at the second call and replayed from then on.
    CPU (opt-in): ``torch.compile(fullgraph=True)`` of the same body: a graph break or a
    host sync in the step would fail loudly here, which is what the CPU tests check.
    """

    def __init__(self, state: DecodingState, cfg_scale: float, window: int):
        self.state, self.cfg_scale, self.window = state, cfg_scale, window
        self.cuda = state.cache.visible.device.type == "cuda"
        self.graph = None
        self.calls = 0
        if not self.cuda:
            backend = state.decode_graph if isinstance(state.decode_graph, str) else "inductor"
            self.compiled = torch.compile(state.fixed_step, backend=backend, fullgraph=True, dynamic=False)

    def __call__(self, noise: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        state = self.state
        if not self.cuda:
            frame, stop_prob = self.compiled(noise, self.cfg_scale, self.window)
            return frame.clone(), stop_prob.clone()
        self.calls += 1
        if self.calls == 1:  # warm-up = this step's real work, eager, on a side stream
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = state.fixed_step(noise, self.cfg_scale, self.window)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.noise = noise.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records, runs nothing
                self.frame, self.stop_prob = state.fixed_step(self.noise, self.cfg_scale, self.window)
        self.noise.copy_(noise)
        self.graph.replay()
        return self.frame.clone(), self.stop_prob.clone()


def draw_noise(noise: NoiseSource, step: int, batch: int, dim: int, device) -> torch.Tensor:
    """[B, dim] noise for one step: from explicit ``[B, steps, dim]`` tensors, a generator, or the global RNG."""
    if isinstance(noise, torch.Tensor):
        if step >= noise.shape[1]:
            raise ValueError(
                f"explicit noise has {noise.shape[1]} steps; step {step} needs more (pass max_frames <= steps)"
            )
        return noise[:, step].to(device)
    if isinstance(noise, torch.Generator):
        return torch.randn(batch, dim, generator=noise, device=noise.device).to(device)
    return torch.randn(batch, dim, device=device)


def prefill(
    lm: SLEDLM,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
    eos_id: int,
    prompt: Optional[torch.Tensor] = None,
    prompt_lengths: Optional[torch.Tensor] = None,
    cfg: bool = True,
    capacity: int = 2048,
    fixed_shape: bool = True,
    decode_graph: Union[None, bool, str] = None,
) -> DecodingState:
    """Feed ``[pad.. text | prompt frames]`` for every row (and its unconditional twin).

    text ``[B, N]`` wrapped ``<s> .. </s>``; prompt ``[B, P, D]`` latent frames or None.
    ``fixed_shape`` / ``decode_graph``: how the state's decode step runs (``DecodingState``).
    """
    B = text.shape[0]
    device = text.device
    if prompt is None:
        prompt = torch.zeros(B, 0, lm.latent_dim, device=device)
        prompt_lengths = torch.zeros(B, dtype=torch.long, device=device)
    if prompt_lengths is None:
        prompt_lengths = torch.full((B,), prompt.shape[1], dtype=torch.long, device=device)
    copies = 2 if cfg else 1
    dropout = torch.arange(copies * B) >= B  # unconditional rows last
    layout = build_layout(text_lengths.repeat(copies), prompt_lengths.repeat(copies), "offline", text_dropout=dropout)
    x = lm.embed_slots(text.repeat(copies, 1), prompt.repeat(copies, 1, 1), layout, eos_id)
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else x.dtype
    state = DecodingState(lm, copies * B, capacity, device, dtype, fixed_shape, decode_graph)
    state.feed(x, layout.visible)
    return state


@dataclass
class Generated:
    frames: torch.Tensor  # [B, T, D] padded
    lengths: torch.Tensor  # [B]
    stop_probs: torch.Tensor  # [B, T]


def generate(
    lm: SLEDLM,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
    eos_id: int,
    prompt: Optional[torch.Tensor] = None,
    prompt_lengths: Optional[torch.Tensor] = None,
    cfg_scale: float = 2.0,
    stop_threshold: float = 0.8,
    max_frames: Optional[int] = None,
    max_positions: int = 2048,
    noise: NoiseSource = None,
    keep_stop_frame: bool = False,
    guidance: Optional[bool] = None,
    fixed_shape: bool = True,
    decode_graph: Union[None, bool, str] = None,
) -> Generated:
    """Offline decoding of a (left-padded internally) batch.

    A row stops at the first step whose conditional stop probability reaches
    ``stop_threshold``; the frame sampled at that step is dropped unless
    ``keep_stop_frame``. Finished rows keep running until every row is done, so a padded
    batch gives each row exactly the frames it would get alone (same noise).
    ``guidance`` forces the doubled (conditional + unconditional) batch on or off; by
    default it runs only when ``cfg_scale != 1``. ``fixed_shape`` / ``decode_graph``: how
    the step runs (``DecodingState``); the frames are the same either way.
    """
    B = text.shape[0]
    prompt_len = 0 if prompt is None else prompt.shape[1]
    prefill_len = int(text_lengths.max()) + prompt_len
    budget = max_positions - prefill_len
    if budget <= 0:
        raise ValueError(
            f"text ({int(text_lengths.max())} tokens) + prompt ({prompt_len} frames) fill the "
            f"model's {max_positions} positions; nothing is left to generate"
        )
    max_frames = budget if max_frames is None else min(max_frames, budget)
    cfg = cfg_scale != 1.0 if guidance is None else guidance
    state = prefill(lm, text, text_lengths, eos_id, prompt, prompt_lengths, cfg, prefill_len + max_frames,
                    fixed_shape, decode_graph)

    device = text.device
    frames = torch.zeros(B, max_frames, lm.latent_dim, device=device)
    probs = torch.zeros(B, max_frames, device=device)
    check_every = STOP_CHECK_EVERY if fixed_shape else 1
    noise_steps = noise.shape[1] if isinstance(noise, torch.Tensor) else max_frames
    steps = max_frames
    for step in range(max_frames):
        frames[:, step], probs[:, step] = state.step(draw_noise(noise, step, B, lm.noise_dim, device), cfg_scale)
        due = (step + 1) % check_every == 0 or step + 1 >= noise_steps
        if due and bool((probs[:, : step + 1] >= stop_threshold).any(1).all()):
            steps = step + 1
            break
    stopped = probs[:, :steps] >= stop_threshold  # [B, steps]
    first_stop = stopped.long().argmax(1)  # first True (0 where none)
    has_stop = stopped.any(1)
    if bool(has_stop.all()):  # every row stopped: output up to the last row's stop step
        steps = int(first_stop.max()) + 1
    lengths = torch.where(has_stop, first_stop + int(keep_stop_frame), torch.full_like(first_stop, steps))
    return Generated(frames[:, :steps], lengths, probs[:, :steps])
