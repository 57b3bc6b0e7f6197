"""Issue 11 item 12: no SLED entry point reaches for the network at start-up. ESPnet's TTS
task imports g2p_en, which calls nltk.download at import time; espnet2_sled defers that
import until a g2p_en phonemizer is really used."""

import sys

from espnet2_sled.no_downloads import defer_import


def test_deferred_module_runs_only_when_a_public_name_is_used(tmp_path, monkeypatch):
    package = tmp_path / "sled_probe_download"
    package.mkdir()
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nVALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sled_probe_download", raising=False)
    defer_import("sled_probe_download")
    import inspect

    import sled_probe_download

    inspect.getmodule(test_deferred_module_runs_only_when_a_public_name_is_used)  # reads every module's __file__
    assert hasattr(sled_probe_download, "__file__") and not marker.exists()
    assert sled_probe_download.VALUE == 3 and marker.exists()  # the real module, on first use
    assert sys.modules["sled_probe_download"].VALUE == 3
    sys.modules.pop("sled_probe_download")


def test_decoding_cli_starts_without_trying_a_download(trained, tmp_path, run_cli):
    data, exp = trained
    r = run_cli("espnet2_sled.bin.sled_inference", "--output_dir", tmp_path / "out",
                "--train_config", exp / "config.yaml", "--model_file", exp / "1epoch.pth",
                "--data_path_and_name_and_type", f"{data}/text,text,text", "--max_frames", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((tmp_path / "out/norm/feats.scp").read_text().splitlines()) == 8
    assert "nltk" not in r.stderr.lower(), [line for line in r.stderr.splitlines() if "nltk" in line.lower()][:5]
