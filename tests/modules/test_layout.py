import pytest
import torch

from espnet2_sled.modules.layout import FRAMES, TEXT, build_layout, dropped_text, streaming_segments, streaming_turn


def test_offline_layout_left_pads_text_and_boundary_predicts_first_frame():
    lay = build_layout(torch.tensor([4, 2]), torch.tensor([3, 1]), "offline")
    # row 1: [pad pad t0 t1 | f0 pad pad]
    assert lay.visible[1].tolist() == [False, False, True, True, True, False, False]
    assert lay.frame_slot[1, 0] == 3 and lay.frame_slot[0].tolist() == [3, 4, 5]
    assert lay.positions[1, 2:5].tolist() == [0, 1, 2]
    assert lay.stop_target[1].tolist() == [0, 1, 0, 0] and lay.stop_weight[1].tolist() == [1, 1, 0, 0]
    assert lay.stop_slot[0].tolist() == [3, 4, 5, 6]


def test_offline_cfg_dropout_keeps_only_boundary():
    lay = build_layout(torch.tensor([4]), torch.tensor([2]), "offline", text_dropout=torch.tensor([True]))
    assert lay.visible[0].tolist() == [False, False, False, True, True, True]


def test_packed_streaming_interleaves_per_utterance():
    lay = build_layout(torch.tensor([5, 3]), torch.tensor([7, 2]), "packed", tokens_per_chunk=2, frames_per_chunk=3)
    # row 0: t0 t1 f0 f1 f2 t2 t3 f3 f4 f5 t4 f6
    kinds = ["t" if i >= 0 else "f" for i in lay.text_index[0].tolist()]
    assert "".join(kinds) == "ttffftt" + "ffftf"
    assert lay.frame_slot[0].tolist() == [1, 2, 3, 6, 7, 8, 10]  # f3 is predicted by t3, f6 by t4
    assert lay.visible[0].all() and lay.positions[0].tolist() == list(range(12))
    assert lay.stop_slot[0, 7] == 11  # after the last frame
    # row 1 (padded at the end): t0 t1 f0 f1 t2 pad...
    assert lay.visible[1].tolist()[:5] == [True] * 5 and not lay.visible[1, 5:].any()


def test_upstream_streaming_keeps_pads_inside_with_raw_positions():
    lay = build_layout(torch.tensor([4, 2]), torch.tensor([4, 3]), "upstream", tokens_per_chunk=2, frames_per_chunk=2)
    # both rows: t0 t1 f0 f1 t2 t3 f2 f3 ; row 1 has t2 t3 and f3 masked
    assert lay.visible[1].tolist() == [True, True, True, True, False, False, True, False]
    assert lay.positions[1].tolist() == list(range(8))
    assert lay.frame_slot[1].tolist() == [1, 2, 3, 6]  # f2's nearest visible predecessor is f1 (slot 3)
    assert lay.stop_slot[1, 3] == 6


def test_streaming_cfg_dropout_shows_single_eos():
    lay = build_layout(torch.tensor([4]), torch.tensor([3]), "packed", 2, 2, text_dropout=torch.tensor([True]))
    assert lay.eos_slot[0, 0] and lay.visible[0].tolist() == [True, False, True, True, False, False, True]
    assert lay.positions[0, [0, 2, 3, 6]].tolist() == [0, 1, 2, 3]


def test_streaming_turns_wait_for_a_full_chunk_until_the_text_is_complete():
    assert streaming_turn(0, 4, False, 3, 5) == (3, 5)
    assert streaming_turn(3, 4, False, 3, 5) is None  # 1 token known: wait for more text
    assert streaming_turn(3, 4, True, 3, 5) == (1, None)  # the last chunk, then all the speech
    assert streaming_turn(3, 6, True, 3, 5) == (3, None)
    assert streaming_turn(6, 6, True, 3, 5) == (0, None)
    assert streaming_turn(0, 4, False, None, 5) is None  # an offline model reads the complete text
    assert streaming_turn(0, 4, True, None, 5) == (4, None)


@pytest.mark.parametrize("text_len, frame_len", [(7, 20), (6, 20), (9, 4), (2, 0), (5, 6)])
def test_incremental_turns_give_the_training_segments(text_len, frame_len):
    """Text arriving one token at a time (as in a streaming session) meets the same slots in
    the same order as training's layout of the whole utterance."""
    n, m = 2, 3
    slots, read, written, writes = [], 0, 0, 0
    for known in range(1, text_len + 1):
        while writes is not None:
            if writes == 0:
                turn = streaming_turn(read, known, known == text_len, n, m)
                if turn is None:
                    break
                take, writes = turn
                slots += [("t", read + i) for i in range(take)]
                read += take
            step = frame_len - written if writes is None else min(writes, frame_len - written)
            slots += [("f", written + i) for i in range(step)]
            written += step
            if writes is not None:
                writes = 0
    expected = [("t" if kind == TEXT else "f", i) for kind, start, end in streaming_segments(text_len, frame_len, n, m)
                for i in range(start, end) if kind in (TEXT, FRAMES)]
    assert slots == expected


def test_dropped_text_shows_eos_only_at_the_sequence_start():
    assert [x.tolist() for x in dropped_text(3, True)] == [[True, False, False], [True, False, False]]
    assert [x.tolist() for x in dropped_text(2, False)] == [[False, False], [False, False]]
