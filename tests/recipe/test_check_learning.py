"""local/check_learning.py on a tiny model trained on latents that are a function of the
text: trained beats untrained on held-out energy distance, the model reads the text (its
own text scores better than another sentence's), and the exit status follows the report."""

import json
import subprocess
import sys

import yaml

from espnet2_sled.bin import sled_inference, sled_train
from factory import DEBUG_CONF, train_args, write_dataset


def test_check_learning_reports_and_gates(recipe_dir, tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    write_dataset(data, odim=8)
    conf = yaml.safe_load(DEBUG_CONF.read_text())
    conf["tts_conf"].update(latent="mel", latent_conf=dict(n_mels=4, stack=2, griffin_lim_iters=2),
                            guided_attention_weight=1.0, guided_attention_layers=[1], guided_attention_heads=1,
                            guided_attention_sigma=0.2)
    conf.update(max_epoch=1, num_iters_per_epoch=200)
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(conf))
    sled_train.main(train_args(data, exp, config=tmp_path / "conf.yaml"))
    decode = tmp_path / "decode"
    sled_inference.main(["--output_dir", str(decode), "--train_config", str(exp / "config.yaml"),
                         "--model_file", str(exp / "1epoch.pth"), "--max_frames", "12",
                         "--data_path_and_name_and_type", f"{data}/text,text,text"])
    proc = subprocess.run(
        [sys.executable, str(recipe_dir / "local" / "check_learning.py"), "--exp", str(exp), "--model", "1epoch.pth",
         "--data", str(data), "--latents", str(data / "feats.scp"), "--decode_dir", str(decode / "wav"),
         "--max_frames", "12", "--out", str(tmp_path / "learning")],
        capture_output=True, text=True)
    report = json.loads((tmp_path / "learning" / "learning.json").read_text())
    ed = report["heldout_energy_distance"]
    assert (proc.returncode == 0) == (ed["trained"] < ed["untrained"]), proc.stderr
    assert ed["trained"] < ed["untrained"]
    assert ed["trained"] < report["trained_energy_distance_other_text"]  # it reads the text
    assert set(report["wer"]) == {"trained", "untrained"} and report["utterances_wer"] == 8
    assert "own text better than other text" in (tmp_path / "learning" / "learning.md").read_text()
