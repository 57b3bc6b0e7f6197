"""import_upstream: key map and config mapping, errors that list every problem, the written
experiment dir (strict ESPnet load, decoding through SLEDText2Speech and the CLI, pack ->
from_pretrained), and export back to upstream names."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import RobertaTokenizer

from espnet2_sled.bin import import_upstream, sled_inference
from espnet2_sled.bin.import_upstream import import_checkpoint
from espnet2_sled.tasks.sled import SLEDTask
from espnet2_sled.text2speech import SLEDText2Speech
from espnet2_sled.tts.sled import SLED
from espnet2_sled.upstream.checkpoint import (
    UpstreamCheckpointError,
    config_from_tts_conf,
    export_state_dict,
    ours_to_upstream,
    tts_conf_from_config,
    upstream_shapes,
    upstream_to_ours,
)
from factory import load_yaml
from synthetic import random_state, tiny_config, write_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encodec_exp(tmp_path_factory):
    """A 128-d synthetic checkpoint imported with (random) Encodec weights, paths relative to root."""
    root = tmp_path_factory.mktemp("enc")
    config, state = write_checkpoint(root / "src", latent_dim=128)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        import_checkpoint("src", "exp", latent_weights="random")
    finally:
        os.chdir(cwd)
    return root, config, state


# ------------------------------------------------------------------ mapping
@pytest.mark.parametrize("streaming", [False, True])
def test_key_map_covers_the_module_tree_exactly(streaming):
    config = tiny_config(300, streaming)
    conf = tts_conf_from_config(config)
    model = SLED(idim=config["vocab_size"], odim=config["vae_embed_dim"], **conf)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {upstream_to_ours(k): shape for k, shape in upstream_shapes(config).items()}
    assert mapped == ours
    assert all(ours_to_upstream(k) == up for up, k in ((u, upstream_to_ours(u)) for u in upstream_shapes(config)))


def test_paper_size_parameter_count():
    paper = dict(hidden_size=1024, num_hidden_layers=12, num_attention_heads=16, intermediate_size=2752,
                 vocab_size=16384, vae_embed_dim=128, diffloss_d=6, diffloss_w=1024, noise_channels=128)
    assert sum(int(np.prod(s)) for s in upstream_shapes(paper).values()) == 203_631_744  # spec §2.7


def test_config_mapping_offline_and_streaming():
    offline = tts_conf_from_config(tiny_config(300))
    assert offline["layout"] == "offline" and offline["stop_threshold"] == 0.8
    assert (offline["bos_id"], offline["eos_id"]) == (0, 2) and offline["cfg_dropout"] == 0.1
    assert (offline["dim"], offline["layers"], offline["heads"], offline["ffn_dim"]) == (32, 2, 4, 48)
    assert (offline["generator_width"], offline["generator_depth"], offline["noise_dim"]) == (24, 3, 6)
    assert offline["max_positions"] == 256 and offline["norm_eps"] == 1e-6 and offline["rope_theta"] == 10000.0
    streaming = tts_conf_from_config(tiny_config(300, streaming=True))
    assert streaming["layout"] == "upstream" and streaming["stop_threshold"] == 0.5
    assert (streaming["tokens_per_chunk"], streaming["frames_per_chunk"]) == (3, 4)
    # and back: our tts_conf -> an upstream config.json that maps to the same tts_conf
    for conf in (offline, streaming):
        assert tts_conf_from_config(config_from_tts_conf(conf, 300, 8)) == conf


def test_round_trip_import_then_export_gives_the_original_tensors(tmp_path):
    config, state = write_checkpoint(tmp_path / "src", streaming=True)
    out = import_checkpoint(tmp_path / "src", tmp_path / "exp", latent="none")
    ours = torch.load(out / "model.pth", map_location="cpu", weights_only=True)
    assert all(k.startswith("tts.") for k in ours)
    back = export_state_dict(ours, load_yaml(out / "config.yaml")["tts_conf"]["stop_pos_weight"])
    assert set(back) == set(state)
    for key in state:
        assert torch.equal(back[key], state[key]), key


def test_model_loads_strictly_through_espnet(encodec_exp):
    root, config, state = encodec_exp
    exp = root / "exp"
    conf = load_yaml(exp / "config.yaml")
    assert conf["tts"] == "sled" and conf["odim"] == 128 and conf["normalize"] is None
    assert conf["token_type"] == "byte_bpe" and conf["bpemodel"] == "exp/tokenizer.json"
    vocab = json.loads((root / "src/vocab.json").read_text())
    assert conf["token_list"] == sorted(vocab, key=vocab.get)
    assert conf["tts_conf"]["latent"] == "encodec" and conf["tts_conf"]["latent_conf"]["weights"] == "deferred"
    saved = torch.load(exp / "model.pth", map_location="cpu", weights_only=True)
    assert any(k.startswith("tts.latent_space.") for k in saved)
    model, _ = SLEDTask.build_model_from_file(exp / "config.yaml", exp / "model.pth", "cpu")
    loaded = model.state_dict()
    assert set(saved) == set(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert torch.equal(saved["tts.lm.generator.blocks.1.fc1.weight"], state["scoreloss.net.res_blocks.1.mlp.0.weight"])


def test_the_checkpoint_fills_a_codec_whose_file_is_absent_and_the_task_keeps_no_state(encodec_exp, tmp_path):
    """A config naming a codec file this machine lacks decodes from the checkpoint (the file is
    read only when no model file is given, and then named in the error); SLEDTask keeps no
    state between builds (codec provenance: latent/provenance.py)."""
    import yaml

    root, _, _ = encodec_exp
    conf = load_yaml(root / "exp" / "config.yaml")
    conf["tts_conf"]["latent_conf"]["weights"] = str(tmp_path / "encodec_24khz-d7cc33bc.th")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(conf))
    task_state = dict(vars(SLEDTask))
    model, _ = SLEDTask.build_model_from_file(config, root / "exp" / "model.pth", "cpu")
    assert model.tts.latent_space.provenance.loaded_from == "state_dict"
    saved = torch.load(root / "exp" / "model.pth", map_location="cpu", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="encodec_24khz-d7cc33bc.th"):
        SLEDTask.build_model_from_file(config, None, "cpu")
    assert dict(vars(SLEDTask)) == task_state


# ------------------------------------------------------------------ errors
def test_every_bad_key_and_shape_is_listed(tmp_path):
    config, state = write_checkpoint(tmp_path / "src")
    del state["model.layers.1.mlp.up_proj.weight"], state["scoreloss.net.res_blocks.2.noise_ln.bias"]
    state["lm_head.weight"] = torch.zeros(3, 3)
    state["scoreloss.net.res_blocks.3.mlp.0.weight"] = torch.zeros(24, 24)
    state["z_proj.weight"] = torch.zeros(32, 9)
    save_file(state, str(tmp_path / "src/model.safetensors"))
    with pytest.raises(UpstreamCheckpointError) as error:
        import_checkpoint(tmp_path / "src", tmp_path / "exp", latent="none")
    message = str(error.value)
    for text in ("missing keys (2)", "model.layers.1.mlp.up_proj.weight", "scoreloss.net.res_blocks.2.noise_ln.bias",
                 "unexpected keys (2)", "lm_head.weight", "scoreloss.net.res_blocks.3.mlp.0.weight",
                 "wrong shapes (1)", "z_proj.weight: (32, 9) (config.json implies (32, 8))"):
        assert text in message
    assert not (tmp_path / "exp").exists()


def test_clear_errors_for_missing_files_pickles_and_config_fields(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_checkpoint(tmp_path / "nowhere", tmp_path / "exp")
    src = tmp_path / "src"
    write_checkpoint(src)
    (src / "merges.txt").rename(tmp_path / "merges.txt")
    with pytest.raises(FileNotFoundError, match="lacks merges.txt"):
        import_checkpoint(src, tmp_path / "exp")
    (tmp_path / "merges.txt").rename(src / "merges.txt")

    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    with pytest.raises(UpstreamCheckpointError, match=r"only pickle weights \(pytorch_model.bin\)"):
        import_checkpoint(src, tmp_path / "exp")
    (src / "pytorch_model.bin").unlink()
    with pytest.raises(UpstreamCheckpointError, match="has no model.safetensors"):
        import_checkpoint(src, tmp_path / "exp")

    config = json.loads((src / "config.json").read_text())
    save_file(random_state(config), str(src / "model.safetensors"))
    broken = {k: v for k, v in config.items() if k not in ("diffloss_w", "rope_theta")}
    (src / "config.json").write_text(json.dumps(broken))
    with pytest.raises(UpstreamCheckpointError, match="lacks required field.*rope_theta.*diffloss_w"):
        import_checkpoint(src, tmp_path / "exp")
    (src / "config.json").write_text(json.dumps(dict(config, num_key_value_heads=2)))
    with pytest.raises(UpstreamCheckpointError, match="grouped-query"):
        import_checkpoint(src, tmp_path / "exp")
    (src / "config.json").write_text(json.dumps(dict(config, vocab_size=config["vocab_size"] + 1)))
    with pytest.raises(ValueError, match=f"vocab_size {config['vocab_size'] + 1}"):
        import_checkpoint(src, tmp_path / "exp")
    (src / "config.json").write_text(json.dumps(config))

    # the CLI turns these into one readable line and a non-zero exit
    with pytest.raises(SystemExit, match="import_upstream: error: .*does not exist"):
        import_upstream.main(["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "exp")])


def test_refuses_to_overwrite_unless_asked(tmp_path):
    write_checkpoint(tmp_path / "src")
    out = tmp_path / "exp"
    out.mkdir()  # an empty dir is fine
    import_checkpoint(tmp_path / "src", out, latent="none")
    first = (out / "model.pth").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--overwrite"):
        import_checkpoint(tmp_path / "src", out, latent="none")
    import_checkpoint(tmp_path / "src", out, latent="none", overwrite=True)
    assert (out / "model.pth").stat().st_mtime_ns != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "src"]  # no temp dirs left behind


# ------------------------------------------------------------------ using the imported model
TEXTS = ["Hello there! How are you doing today?", "\u201cQuoted,\u201d she said \u2014 3.14 caf\u00e9s."]


def test_decodes_through_sled_text2speech_with_upstream_token_ids(encodec_exp):
    root, config, _ = encodec_exp
    exp = root / "exp"
    cwd = os.getcwd()
    os.chdir(root)  # config.yaml names exp/tokenizer.json relative to the import's cwd
    try:
        t2s = SLEDText2Speech(exp / "config.yaml", exp / "model.pth", max_frames=5, stop_threshold=2.0)
    finally:
        os.chdir(cwd)
    roberta = RobertaTokenizer(str(root / "src/vocab.json"), str(root / "src/merges.txt"))
    for text in TEXTS:
        assert t2s.tokenize(text).tolist() == roberta(text)["input_ids"][1:-1]
    out = t2s(TEXTS[0], seed=0)
    assert out["feat_gen"].shape == (5, 128) and out["wav"].shape == (5 * 320,)
    assert torch.isfinite(out["wav"]).all()


def test_cli_decoding_of_an_imported_model(encodec_exp, tmp_path):
    root, _, _ = encodec_exp
    (tmp_path / "text").write_text("".join(f"utt{i} {t}\n" for i, t in enumerate(TEXTS)))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        sled_inference.main([
            "--output_dir", str(tmp_path / "decode"), "--train_config", "exp/config.yaml",
            "--model_file", "exp/model.pth", "--data_path_and_name_and_type", f"{tmp_path}/text,text,text",
            "--max_frames", "4", "--stop_threshold", "2.0", "--batch_size", "2",
        ])
    finally:
        os.chdir(cwd)
    scp = dict(line.split() for line in (tmp_path / "decode/norm/feats.scp").read_text().splitlines())
    assert sorted(scp) == ["utt0", "utt1"] and np.load(scp["utt1"]).shape == (4, 128)
    assert len(list((tmp_path / "decode/wav").glob("*.wav"))) == 2


def pack(root: Path, zip_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "espnet2.bin.pack", "tts", "--train_config", "exp/config.yaml",
         "--model_file", "exp/model.pth", "--option", "exp/tokenizer.json", "--outpath", str(zip_path)],
        check=True, capture_output=True, cwd=root,
    )


def test_pack_and_from_pretrained(encodec_exp, tmp_path):
    root, _, _ = encodec_exp
    zip_path = tmp_path / "sled_upstream.zip"
    pack(root, zip_path)
    t2s = SLEDText2Speech.from_pretrained(str(zip_path), cachedir=str(tmp_path / "cache"), max_frames=3,
                                          stop_threshold=2.0)
    assert Path(t2s.train_args.bpemodel).is_file() and str(tmp_path / "cache") in t2s.train_args.bpemodel
    roberta = RobertaTokenizer(str(root / "src/vocab.json"), str(root / "src/merges.txt"))
    assert t2s.tokenize(TEXTS[1]).tolist() == roberta(TEXTS[1])["input_ids"][1:-1]
    assert t2s(TEXTS[1], seed=1)["feat_gen"].shape == (3, 128)


def test_from_pretrained_in_a_fresh_process(encodec_exp, tmp_path):
    root, _, _ = encodec_exp
    zip_path = tmp_path / "sled_upstream.zip"
    pack(root, zip_path)
    code = (
        "import sys\n"
        "from espnet2_sled.text2speech import SLEDText2Speech\n"
        f"t2s = SLEDText2Speech.from_pretrained({str(zip_path)!r}, cachedir={str(tmp_path / 'c')!r}, max_frames=2)\n"
        "print(t2s('Hello there!', seed=0)['feat_gen'].shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_export_writes_a_folder_that_imports_to_the_same_model(tmp_path):
    from espnet2_sled.upstream.export import export_checkpoint

    config, state = write_checkpoint(tmp_path / "src", streaming=True)
    first = import_checkpoint(tmp_path / "src", tmp_path / "exp", latent="none")
    folder = export_checkpoint(first / "config.yaml", first / "model.pth", tmp_path / "exported")
    exported_config = json.loads((folder / "config.json").read_text())
    assert exported_config["stream_n"] == 3 and exported_config["vocab_size"] == config["vocab_size"]
    assert json.loads((folder / "vocab.json").read_text()) == json.loads((tmp_path / "src/vocab.json").read_text())
    second = import_checkpoint(folder, tmp_path / "exp2", latent="none")
    a, b = (torch.load(d / "model.pth", map_location="cpu", weights_only=True) for d in (first, second))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert load_yaml(first / "config.yaml")["tts_conf"] == load_yaml(second / "config.yaml")["tts_conf"]
    roberta = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    reference = RobertaTokenizer(str(tmp_path / "src/vocab.json"), str(tmp_path / "src/merges.txt"))
    assert all(roberta(t)["input_ids"] == reference(t)["input_ids"] for t in TEXTS)


def test_imported_model_stops_at_the_same_step_through_the_engine(encodec_exp):
    """#22: an upstream-format checkpoint decodes through the CPU decode engine (fp32) to the
    PyTorch step's frames (<= 1e-4) and stop step."""
    pytest.importorskip("onnxruntime")
    root, _, _ = encodec_exp
    exp = root / "exp"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        t2s = {backend: SLEDText2Speech(exp / "config.yaml", exp / "model.pth", max_frames=30, decode_backend=backend)
               for backend in ("torch", "onnxruntime")}
    finally:
        os.chdir(cwd)
    probs = t2s["torch"](TEXTS[0], seed=0, stop_threshold=2.0)["stop_probs"]  # no stop: all 30 steps
    running = torch.cummax(probs, 0).values
    # a step whose stop probability clears every earlier one by a margin: the threshold just below it
    step = next(k for k in range(5, 30) if probs[k] > running[k - 1] + 2e-3)
    threshold = float(probs[step]) - 1e-3
    outs = {backend: t(TEXTS[0], seed=0, stop_threshold=threshold)["feat_gen"] for backend, t in t2s.items()}
    assert outs["torch"].shape[0] == outs["onnxruntime"].shape[0] == step  # same stop step
    assert (outs["torch"] - outs["onnxruntime"]).abs().max() <= 1e-4
