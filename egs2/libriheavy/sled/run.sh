#!/usr/bin/env bash
# SLED-TTS on LibriHeavy. Sets the data sets and configs, then runs ./sled.sh.
#
#   ./run.sh                                  full recipe (edit db.sh first)
#   ./run.sh --mini true                      synthetic mini corpus, small model, CPU (~20 min)
#   ./run.sh --mini true --stage 3 --stop_stage 4
# Any sled.sh option may follow and overrides the settings below.
set -euo pipefail

mini=false
latent=""  # only looked at, to choose the mini recipe's latent options; passed on to sled.sh
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --mini) mini=$2; shift 2 ;;
        --mini=*) mini=${1#*=}; shift ;;
        --latent) latent=$2; args+=("$1" "$2"); shift 2 ;;
        --latent=*) latent=${1#*=}; args+=("$1"); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ "${mini}" != true ] && [ "${mini}" != false ]; then
    echo "$0: --mini expects true or false, got '${mini}'" >&2
    exit 1
fi

if [ "${mini}" = true ]; then
    # flite/espeak-ng corpus written on the fly (local/make_mini_corpus.py); log-mel
    # latents need no codec weights, and are stacked 3 mel frames to a latent frame (25 Hz:
    # 3x fewer autoregressive steps, which is what lets the small model align in minutes);
    # everything runs on CPU with 2 jobs; 12 of the 25 test utterances are decoded in each
    # mode, at most 4 s each (CPU decoding is slow). Training is a single process here, so
    # let it use both cores (path.sh keeps a value already set).
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
    latent_opts=(--latent mel --latent_opts "--latent_conf stack=3" --inference_args "--max_frames 100")
    if [ -n "${latent}" ] && [ "${latent}" != mel ]; then
        latent_opts=(--inference_args "--max_frames 300")  # e.g. the Encodec plumbing run: 75 Hz
    fi
    opts=(
        --local_data_opts "--mini true"
        --train_set mini_train
        --valid_set mini_dev
        --test_sets mini_test
        --optional_test_sets librivox_test
        "${latent_opts[@]}"
        --latent_weights random
        --nj 2
        --inference_nj 2
        --ngpu 0
        --nbpe 256
        --train_config conf/tuning/train_sled_small.yaml
        --streaming_config conf/tuning/train_sled_streaming_small.yaml
        --decode_modes "resynthesis offline streaming clone continuation"
        --check_learning true
        --prompt_seconds 1.5
        --decode_max_utts 12
    )
else
    # LibriHeavy (cased + punctuated manifests), Encodec 24 kHz latents at 75 Hz.
    # For the whole corpus prepare small/medium/large and train on their union.
    opts=(
        --train_set small
        --valid_set dev
        --test_sets "test_clean test_other"
        --latent encodec
        --latent_weights downloads/encodec_24khz-d7cc33bc.th
        --nj 32
        --inference_nj 8
        --ngpu 1
        --nbpe 5000
        --train_config conf/tuning/train_sled.yaml
        --streaming_config conf/tuning/train_sled_streaming.yaml
        --decode_modes "resynthesis offline streaming clone continuation"
    )
fi

./sled.sh "${opts[@]}" "${args[@]}"
