"""Launched by torchrun in test_distributed: trains with ESPnet's trainer under gloo and saves
this rank's final parameters (ESPnet itself only saves on rank 0)."""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from espnet2_sled.tasks.sled import SLEDTask  # noqa: E402

built = []


class RecordingTask(SLEDTask):
    @classmethod
    def build_model(cls, args):
        model = super().build_model(args)
        built.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return model


if __name__ == "__main__":
    out = sys.argv[1]
    RecordingTask.main(cmd=sys.argv[2:])
    rank = int(os.environ["RANK"])
    model, initial = built[0]
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pth"))
    torch.save(initial, os.path.join(out, f"rank{rank}_init.pth"))
