"""Issue 11 item 9: a truncated or corrupt model.safetensors is named, with what is wrong,
by the import CLI (a clean ``import_upstream: error:`` exit, nothing written)."""

import pytest

from espnet2_sled.bin import import_upstream
from synthetic import write_checkpoint


def cli_error(src, out):
    with pytest.raises(SystemExit) as exit_info:
        import_upstream.main(["--src", str(src), "--out", str(out), "--latent", "none"])
    message = str(exit_info.value.code)
    assert message.startswith("import_upstream: error: ") and not out.exists()
    return message


def test_truncated_and_corrupt_safetensors_are_named(tmp_path):
    src = tmp_path / "src"
    write_checkpoint(src)
    weights = src / "model.safetensors"
    whole = weights.read_bytes()
    header_end = 8 + int.from_bytes(whole[:8], "little")
    out = tmp_path / "exp"

    weights.write_bytes(whole[:-1000])  # an interrupted download
    message = cli_error(src, out)
    assert f"weights file '{weights}' is truncated: its tensors need {len(whole) - header_end} bytes" in message
    assert f"the file holds {len(whole) - header_end - 1000}" in message

    weights.write_bytes(whole[:header_end - 10])  # cut inside the header
    assert f"'{weights}' is truncated: its header says" in cli_error(src, out)

    weights.write_bytes(whole[:8] + b"{not json" + whole[17:])
    assert f"'{weights}' has a header that is not valid JSON" in cli_error(src, out)

    weights.write_bytes(whole)  # and the whole file imports
    import_upstream.main(["--src", str(src), "--out", str(out), "--latent", "none"])
    assert (out / "model.pth").is_file()
