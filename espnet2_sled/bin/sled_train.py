#!/usr/bin/env python3
"""Train SLED with ESPnet's trainer: the same options as ``espnet2.bin.tts_train``."""

import espnet2_sled.registry  # noqa: F401  (tts: sled for ESPnet's parser and model builder)
from espnet2_sled.memory import return_large_frees_to_os
from espnet2_sled.tasks.sled import SLEDTask


def get_parser():
    return SLEDTask.get_parser()


def main(cmd=None):
    """Examples:
    python -m espnet2_sled.bin.sled_train --print_config --tts sled --odim 128
    python -m espnet2_sled.bin.sled_train --config conf/debug.yaml --odim 80 ...
    """
    return_large_frees_to_os()  # peak training memory: freed activations go back to the OS
    SLEDTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
