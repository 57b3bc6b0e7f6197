#!/usr/bin/env bash
# After `make demo`: every stage of the mini recipe left its outputs, and the trained model
# beat the untrained one (stage 8's check_learning already fails the run otherwise).
set -uo pipefail
cd "$(dirname "$0")/../egs2/libriheavy/sled"
exp=$(ls -d exp/sled_train_*_mel_bpe 2>/dev/null | grep -v streaming | head -n 1)
missing=0
check() { for f in "$@"; do [ -s "$f" ] || { echo "CI: missing or empty: $f" >&2; missing=1; }; done; }
check data/mini_train/wav.scp data/mini_train/segments data/mini_test/text            # stage 1
check dump/latents/mini_train/feats.scp dump/latents/mini_test/speech_shape           # stage 2
check dump/token_list/bpe_unigram256/tokens.txt dump/token_list/bpe_unigram256/bpe.model  # stage 3
check exp/sled_stats_mel_bpe_unigram256/train/speech_shape.filtered                    # stage 4
check "${exp}/valid.loss.best.pth" "${exp}/config.yaml"                                # stage 5
check "${exp}_streaming/valid.loss.best.pth"                                           # stage 6
for mode in resynthesis offline clone continuation; do                                 # stages 7, 8
  check "${exp}/decode_${mode}_valid.loss.best/mini_test/wav.scp" \
        "${exp}/decode_${mode}_valid.loss.best/mini_test/scores/scores.md"
done
check "${exp}_streaming/decode_streaming_valid.loss.best/mini_test/timing.jsonl" \
      "${exp}/RESULTS.md" "${exp}/learning/learning.json"
ls "${exp}"/*.zip >/dev/null 2>&1 || { echo "CI: no packed zip in ${exp} (stage 9)" >&2; missing=1; }  # stage 9
[ $missing -eq 0 ] && echo "CI: every mini-recipe stage produced its outputs" && cat "${exp}/learning/learning.md"
exit $missing
