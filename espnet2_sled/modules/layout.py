"""Sequence layouts: where text tokens and latent frames sit, and who predicts which frame.

A layout turns a padded batch (text ``[B, N]`` + lengths, frames ``[B, T, D]`` + lengths)
into one slot sequence ``[B, L]`` for the decoder and says

* which text token or frame fills each slot (``text_index`` / ``frame_index``, -1 if none),
* which slots are visible to attention (``visible``) and their RoPE ``positions``,
* which slot's hidden state conditions frame t (``frame_slot [B, T]``: the nearest visible
  slot before frame t), and
* which slots decide "stop before frame j", j = 0..T (``stop_slot [B, T+1]``, target at
  j = number of real frames, weights ``stop_weight``).

Offline: ``[pad.. text(N_b) | frames(T_b) pad..]`` (text left-padded, so the boundary token
``</s>`` is always slot N-1 and predicts frame 0).

Streaming (n text tokens, then m frames, repeated; the rest of the speech follows the
last text chunk). ``streaming_turn`` states this schedule one turn at a time; training
(``streaming_segments``) and incremental decoding (``espnet2_sled.streaming``) both follow it:

* ``"upstream"``: the released checkpoint's layout. The *padded* text and speech are
  interleaved, so padding stays inside the sequence, and positions are raw slot indices
  (RoPE gaps where padding sits). Needed for exact parity with upstream training.
* ``"packed"``: each utterance is interleaved with its own lengths and padded at the end;
  positions are contiguous over visible slots. No gaps, so training sees exactly what
  incremental inference sees. Our default for new training.

Classifier-free-guidance dropout hides the text: offline keeps only the boundary slot;
streaming shows a single ``</s>`` at slot 0 (``eos_slot``), as the unconditional branch at
inference is ``[</s>, f_0, f_1, ...]`` (``dropped_text``, used by both).
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

TEXT, FRAMES, PAD = 0, 1, 2
Segment = Tuple[int, int, int]  # (kind, start, end)


@dataclass
class Layout:
    text_index: torch.Tensor  # [B, L] long, -1 where the slot holds no text
    frame_index: torch.Tensor  # [B, L] long, -1 where the slot holds no frame
    eos_slot: torch.Tensor  # [B, L] bool: embed the </s> token here (CFG-dropped streaming rows)
    visible: torch.Tensor  # [B, L] bool
    positions: torch.Tensor  # [B, L] long
    frame_slot: torch.Tensor  # [B, T] long
    stop_slot: torch.Tensor  # [B, T+1] long
    stop_weight: torch.Tensor  # [B, T+1] float
    stop_target: torch.Tensor  # [B, T+1] float


def offline_segments(text_len: int, max_text: int, max_frames: int) -> List[Segment]:
    """Left padding up to max_text, the row's text, then max_frames frame slots."""
    return [(PAD, 0, max_text - text_len), (TEXT, 0, text_len), (FRAMES, 0, max_frames)]


def streaming_turn(
    tokens_read: int,
    tokens_known: int,
    text_complete: bool,
    tokens_per_chunk: Optional[int],
    frames_per_chunk: int,
) -> Optional[Tuple[int, Optional[int]]]:
    """The next turn of a streaming layout: (tokens to read now, frames to write after them,
    None = all the remaining speech), or None while it has to wait for more text.

    A turn reads ``tokens_per_chunk`` tokens (fewer only once the text is complete: the last
    chunk), then writes ``frames_per_chunk`` frames; the turn that reads the end of the text
    writes all the remaining speech. ``tokens_per_chunk`` None (an offline model, streamed):
    the whole text once it is complete, then all the speech. The frames written by a turn come
    before the tokens of the next one in the sequence.
    """
    unread = tokens_known - tokens_read
    if text_complete:
        take = unread if tokens_per_chunk is None else min(unread, tokens_per_chunk)
    elif tokens_per_chunk is not None and unread >= tokens_per_chunk:
        take = tokens_per_chunk
    else:
        return None
    all_read = text_complete and take == unread
    return take, None if all_read else frames_per_chunk


def streaming_segments(text_len: int, frame_len: int, tokens_per_chunk: int, frames_per_chunk: int) -> List[Segment]:
    """The turns of ``streaming_turn`` over a whole utterance: read ``tokens_per_chunk`` tokens,
    write ``frames_per_chunk`` frames, repeat; after the last (possibly partial) text chunk
    comes all remaining speech. Text left when the speech ends (training data only) follows,
    chunk by chunk."""
    segments: List[Segment] = []
    read = written = 0
    while True:
        take, writes = streaming_turn(read, text_len, True, tokens_per_chunk, frames_per_chunk)
        end = frame_len if writes is None else min(written + writes, frame_len)
        segments += [(TEXT, read, read + take), (FRAMES, written, end)]
        read, written = read + take, end
        if writes is None:
            return segments


def dropped_text(num_slots: int, at_sequence_start: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(visible, eos) ``[num_slots]`` bool for text slots a streaming row reads with its text
    dropped (classifier-free guidance's unconditional row): none of its text is visible, and
    the very first slot of the sequence holds ``</s>`` instead (``[</s>, f_0, f_1, ...]``)."""
    visible = torch.zeros(num_slots, dtype=torch.bool)
    eos = torch.zeros(num_slots, dtype=torch.bool)
    if at_sequence_start and num_slots > 0:
        visible[0] = eos[0] = True
    return visible, eos


def build_layout(
    text_lengths: torch.Tensor,
    frame_lengths: torch.Tensor,
    layout: str = "offline",
    tokens_per_chunk: int = 5,
    frames_per_chunk: int = 45,
    text_dropout: Optional[torch.Tensor] = None,
) -> Layout:
    """text_lengths, frame_lengths ``[B]``; text_dropout ``[B]`` bool (CFG rows) or None."""
    B = text_lengths.shape[0]
    device = text_lengths.device
    N, T = int(text_lengths.max()), int(frame_lengths.max()) if B else 0
    if text_dropout is None:
        text_dropout = torch.zeros(B, dtype=torch.bool)
    rows = []
    for b in range(B):
        n_b, t_b = int(text_lengths[b]), int(frame_lengths[b])
        if layout == "offline":
            rows.append(offline_segments(n_b, N, T))
        elif layout == "upstream":  # padded lengths interleaved: pads stay inside
            rows.append(streaming_segments(N, T, tokens_per_chunk, frames_per_chunk))
        elif layout == "packed":
            rows.append(streaming_segments(n_b, t_b, tokens_per_chunk, frames_per_chunk))
        else:
            raise ValueError(f"unknown layout '{layout}'; expected offline, packed or upstream")
    L = max(sum(e - s for _, s, e in segs) for segs in rows)

    text_index = torch.full((B, L), -1, dtype=torch.long)
    frame_index = torch.full((B, L), -1, dtype=torch.long)
    eos_slot = torch.zeros(B, L, dtype=torch.bool)
    visible = torch.zeros(B, L, dtype=torch.bool)
    frame_slot_raw = torch.full((B, T), -1, dtype=torch.long)
    for b, segs in enumerate(rows):
        n_b, t_b = int(text_lengths[b]), int(frame_lengths[b])
        cursor = 0
        for seg_kind, start, end in segs:
            span = slice(cursor, cursor + end - start)
            idx = torch.arange(start, end)
            if seg_kind == TEXT:
                # text slots past this row's length ("upstream" keeps them) hold no token:
                # -1, so the batch's padding value (ESPnet pads with -1) is never embedded
                text_index[b, span] = torch.where(idx < n_b, idx, -1)
                visible[b, span] = idx < n_b
            elif seg_kind == FRAMES:
                frame_index[b, span] = idx
                visible[b, span] = idx < t_b
                frame_slot_raw[b, start:end] = torch.arange(span.start, span.stop)
            cursor = span.stop
        if bool(text_dropout[b]):
            text_slots = (text_index[b] >= 0).nonzero().flatten()
            if layout == "offline":
                visible[b, text_slots] = False
                visible[b, text_slots[-1]] = True  # only the boundary token </s> stays
            else:  # a streaming layout starts with text: its slots are read from the sequence start
                visible[b, text_slots], eos_slot[b, text_slots] = dropped_text(len(text_slots), True)

    positions = (visible.cumsum(1) - 1).clamp(min=0)
    if layout == "upstream":
        positions = torch.arange(L).expand(B, L).clone()

    # Nearest visible slot strictly before each slot.
    slot_ids = torch.arange(L).expand(B, L)
    last_visible = torch.where(visible, slot_ids, torch.full_like(slot_ids, -1)).cummax(1).values
    prev_visible = torch.cat([torch.full((B, 1), -1, dtype=torch.long), last_visible[:, :-1]], 1)
    frame_slot = prev_visible.gather(1, frame_slot_raw.clamp(min=0))

    stop_slot = torch.zeros(B, T + 1, dtype=torch.long)
    stop_weight = torch.zeros(B, T + 1)
    stop_target = torch.zeros(B, T + 1)
    for b in range(B):
        t_b = int(frame_lengths[b])
        has_slot = frame_slot_raw[b] >= 0
        stop_slot[b, :T] = torch.where(has_slot, frame_slot[b], 0)
        if t_b == 0:  # nothing to say but "stop" (prefill of an unprompted decode)
            stop_slot[b, 0] = last_visible[b, -1]
        elif t_b == T or not bool(has_slot[t_b]):
            # no slot for frame t_b: the hidden state at the last real frame decides
            stop_slot[b, t_b] = frame_slot_raw[b, t_b - 1]
        stop_weight[b, : t_b + 1] = 1.0
        stop_target[b, t_b] = 1.0
    frame_slot = frame_slot.clamp(min=0)
    return Layout(
        *(x.to(device) for x in (text_index, frame_index, eos_slot, visible, positions)),
        *(x.to(device) for x in (frame_slot, stop_slot, stop_weight, stop_target)),
    )
