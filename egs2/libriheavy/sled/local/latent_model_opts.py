#!/usr/bin/env python3
"""Training options that attach the latent space the latents were extracted with.

    latent_model_opts.py dump/latents/<train>/latent.yaml WEIGHTS
    -> --tts_conf latent=encodec --tts_conf latent_conf={"weights":"WEIGHTS",...}

WEIGHTS (the codec weights file, or ``random``) is used for ``encodec`` only.
"""

import json
import sys

import yaml


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit(__doc__)
    with open(argv[0]) as f:
        info = yaml.safe_load(f)
    conf = dict(info.get("latent_conf") or {})
    if info["latent"] == "encodec":
        conf["weights"] = argv[1]
    print("--tts_conf", "latent=" + info["latent"], "--tts_conf",
          "latent_conf=" + json.dumps(conf, separators=(",", ":")))


if __name__ == "__main__":
    main()
