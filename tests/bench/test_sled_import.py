"""bench/sled_import.py: the benches run on a machine with torch and no ESPnet (the GPU image).
Here ESPnet is made unimportable in a fresh process; the long-run probe still trains and
scores, and the speed bench still builds and decodes a model."""

import subprocess
import sys

from factory import REPO
from test_mini_learning_curve import fake_export

NO_ESPNET = """
import sys
class NoESPnet:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("espnet", "espnet2"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, NoESPnet())
"""


def test_benches_run_without_espnet(tmp_path):
    fake_export(tmp_path / "data.pt")
    code = NO_ESPNET + f"""
import runpy
sys.path.insert(0, {str(REPO / "bench")!r})
sys.argv = ["mini_learning_curve.py", "train", "--data", {str(tmp_path / "data.pt")!r}, "--out",
            {str(tmp_path / "run")!r}, "--device", "cpu", "--max_updates", "2", "--eval_every", "2"]
runpy.run_path({str(REPO / "bench" / "mini_learning_curve.py")!r}, run_name="__main__")

import torch
from bench_sled import build
model = build("debug", torch.device("cpu")).eval()
wrapped, wl = model.wrap_text(torch.tensor([[3, 4, 5]]), torch.tensor([3]))
from espnet2_sled.modules.generation import generate
print("frames", tuple(generate(model.lm, wrapped, wl, model.eos_id, max_frames=4, stop_threshold=2.0).frames.shape))
print("espnet2 is", sys.modules["espnet2"].__doc__)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert " CURVE " in result.stdout and "frames (1, 4, 8)" in result.stdout
    assert "espnet2 is stand-in for ESPnet" in result.stdout
