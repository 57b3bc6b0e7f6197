"""A model that has memorised its training utterances must reproduce them when decoding
free-running (its own samples fed back), not only teacher-forced: the check that a
train/decode mismatch (positions, CFG rows, stop slot, fed-back frames, dropout) would fail.
Issue #12 step 1; the same check on flite speech with the small config is in the recipe
README ("The long run")."""

import torch

from factory import SENTENCES, tiny_sled


def test_memorised_utterances_are_reproduced_free_running():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    sentences = SENTENCES[:2]
    chars = sorted(set("".join(sentences)))
    table = {c: torch.randn(8, generator=g) for c in chars}
    ids = [torch.tensor([2 + chars.index(c) for c in s]) for s in sentences]
    feats = [torch.stack([table[c] for c in s]) for s in sentences]  # a frame a char; "." ends both
    model = tiny_sled(idim=len(chars) + 3, cfg_dropout=0.1)
    text = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    tl = torch.tensor([len(t) for t in ids])
    fe = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    fl = torch.tensor([len(f) for f in feats])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(400):
        loss, _, _ = model(text, tl, fe, fl)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for cfg in (1.0, 2.0):
        out = model.generate_batch(text, tl, max_frames=int(fl.max()) + 10, seed=0, cfg_scale=cfg)
        for b in range(2):
            gen = out.frames[b, : int(out.lengths[b])]
            assert abs(gen.shape[0] - int(fl[b])) <= 1, (cfg, b, gen.shape[0], int(fl[b]))
            n = min(gen.shape[0], int(fl[b]))
            err = (gen[:n] - feats[b][:n]).abs().mean()
            assert err < 0.2, (cfg, b, float(err))  # data values are ~N(0, 1)
