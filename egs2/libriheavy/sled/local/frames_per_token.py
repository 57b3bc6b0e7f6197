#!/usr/bin/env python3
"""Frames per text token over the training data: what "implausibly short" output means.

    frames_per_token.py TEXT_SHAPE SPEECH_SHAPE OUT_JSON   (stage 4: measure, write OUT_JSON)
    frames_per_token.py --opts OUT_JSON                    (stages 5, 6: the training option)
    -> --tts_conf min_frames_per_token=2.91

Shape files are ESPnet ``key dim1,...`` lines (the length first): the length-filtered text
and speech shapes stage 4 leaves. OUT_JSON holds the 1st percentile, the median and the
count of utterances; the 1st percentile goes into the model's ``tts_conf`` so that it is
packed with the model, and decoding names output below half of it per token
(espnet2_sled/decode_report.py). ``--opts`` prints nothing when OUT_JSON is missing (a stats
dir from before this file existed): the model then uses the documented fallback.
"""

import json
import os
import sys

import numpy as np
from filter_by_length import read_shape


def lengths(path):
    """ESPnet shape file -> {key: first dim} (filter_by_length's reader)."""
    return {key: length for key, (length, _) in read_shape(path, "frames_per_token").items()}


def measure(text_shape, speech_shape, out):
    tokens, frames = lengths(text_shape), lengths(speech_shape)
    ratios = np.array([frames[k] / tokens[k] for k in tokens if k in frames and tokens[k] > 0 and frames[k] > 0])
    if ratios.size == 0:
        sys.exit(f"frames_per_token: no utterance is in both {text_shape} and {speech_shape}")
    stats = dict(p01=round(float(np.percentile(ratios, 1)), 4), median=round(float(np.median(ratios)), 4),
                 utterances=int(ratios.size))
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, out)
    print(f"frames per text token over {stats['utterances']} utterances: 1st percentile {stats['p01']}, "
          f"median {stats['median']} -> {out}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--opts":
        if os.path.isfile(argv[1]):
            with open(argv[1]) as f:
                print("--tts_conf", f"min_frames_per_token={json.load(f)['p01']}")
    elif len(argv) == 3:
        measure(*argv)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
