"""Return large freed CPU buffers to the OS during training (glibc's mmap threshold).

glibc serves allocations above its mmap threshold with their own mappings, unmapped on
free; but after the first large free it raises that threshold (up to 32 MiB), and from
then on a training step's activations come from the heap, whose freed space stays in the
process. On the paper config (4 x 5 s, fp32, CPU) that retention alone was ~2 GiB of peak
RSS (8.27 vs 6.14 GiB, ``bench/results/train_memory_cpu.txt``). Fixing the threshold keeps
large buffers mapped per allocation: the cost is page faults on fresh memory (a few % of a
CPU training step). Used by ``sled_train`` only: decoding allocates small tensors per step.
"""

import ctypes
import platform

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def return_large_frees_to_os(threshold_bytes: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold at ``threshold_bytes``; False where that is not glibc."""
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)))
    except (OSError, AttributeError):
        return False
