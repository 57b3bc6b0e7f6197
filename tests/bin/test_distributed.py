"""Two CPU processes under torch.distributed (gloo), launched the way torchrun launches ESPnet:
both ranks must end with identical parameters (DDP averaged their different batches)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from factory import train_args, write_dataset


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_gloo_training_keeps_ranks_identical(tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    write_dataset(data, n=8)
    worker = Path(__file__).with_name("dist_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), str(worker), str(tmp_path),
        *train_args(data, exp, extra=["--multiprocessing_distributed", "false", "--dist_backend", "gloo"]),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[vm:0/2]" in proc.stderr and "distributed: true" in (exp / "config.yaml").read_text()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pth", weights_only=True) for r in (0, 1))
    init = torch.load(tmp_path / "rank0_init.pth", weights_only=True)
    assert set(r0) == set(r1)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    trained = [k for k in r0 if not torch.equal(r0[k], init[k])]
    assert len(trained) > 10  # the ranks did train, and stayed in step
