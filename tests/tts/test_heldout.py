"""Teacher-forced frames (``espnet2_sled.tts.heldout.teacher_forced_frames``, the learning
curve's "does it read" check): frame t is sampled from the ground-truth past only, with the
text given, and the model's mode is left as it was."""

import torch

from espnet2_sled.tts.heldout import teacher_forced_frames
from factory import tiny_sled


def test_frame_t_sees_only_the_frames_before_it_and_the_text():
    model = tiny_sled(seed=0)
    model.train()
    torch.manual_seed(1)
    text, feats = torch.randint(1, 19, (6,)), torch.randn(10, 8)
    frames = teacher_forced_frames(model, text, feats, seed=3)
    assert frames.shape == (10, 8) and torch.isfinite(frames).all()
    assert model.training  # restored
    torch.testing.assert_close(teacher_forced_frames(model, text, feats, seed=3), frames)  # fixed noise
    changed = feats.clone()
    changed[6:] += 1.0  # a different future from frame 6 on
    again = teacher_forced_frames(model, text, changed, seed=3)
    torch.testing.assert_close(again[:7], frames[:7])  # frames 0..6 read feats[:t] only
    assert not torch.allclose(again[7:], frames[7:])
    other = teacher_forced_frames(model, torch.randint(1, 19, (4,)), feats, seed=3)
    assert not torch.allclose(other, frames)  # the text is read
