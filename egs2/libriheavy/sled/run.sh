#!/usr/bin/env bash
# SLED-TTS on LibriHeavy. Sets the data sets and configs, then runs ./sled.sh.
#
#   ./run.sh                                  full recipe (edit db.sh first)
#   ./run.sh --mini true                      synthetic mini corpus, small model, CPU (~20 min)
#   ./run.sh --mini true --stage 3 --stop_stage 4
#   ./run.sh --mini true --long true          the long run: one voice, ~4.5 h of generated
#                                             sentences, phonemes, hours of training with a
#                                             learning curve (README, "The long run")
# Any sled.sh option may follow and overrides the settings below.
set -euo pipefail

mini=false
long=false
latent=""  # only looked at, to choose the mini recipe's latent options; passed on to sled.sh
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --mini) mini=$2; shift 2 ;;
        --mini=*) mini=${1#*=}; shift ;;
        --long) long=$2; shift 2 ;;
        --long=*) long=${1#*=}; shift ;;
        --latent) latent=$2; args+=("$1" "$2"); shift 2 ;;
        --latent=*) latent=${1#*=}; args+=("$1"); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ "${mini}" != true ] && [ "${mini}" != false ]; then
    echo "$0: --mini expects true or false, got '${mini}'" >&2
    exit 1
fi
if [ "${long}" != false ] && { [ "${long}" != true ] || [ "${mini}" != true ]; }; then
    echo "$0: --long true goes with --mini true (got --long '${long}' --mini '${mini}')" >&2
    exit 1
fi

if [ "${long}" = true ]; then
    # The long run (an experiment outside CI): a corpus made to be learnable -- one flite
    # voice reading the mini sentences plus 4000 generated ones (~4.5 h), phoneme tokens,
    # 25-Hz log-mel -- and training for hours in chunks of epochs, each followed by a
    # learning-curve row (held-out energy distance with own / other / no text, free-running
    # WER with the recipe's scorer) in ${expdir}/<exp>/learning_curve.tsv. Separate data
    # names, dump and exp dirs: it does not touch the mini recipe's outputs. Resumable:
    # rerun the same command (training resumes from its last epoch, rows are not redone).
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
    opts=(
        --local_data_opts "--mini true --mini_dir downloads/long_corpus --mini_prefix long --mini_voices flite_slt --mini_generated_train 4000 --mini_num_test 40"
        --train_set long_train
        --valid_set long_dev
        --test_sets long_test
        --dumpdir dump_long
        --expdir exp_long
        --latent mel --latent_opts "--latent_conf stack=3" --inference_args "--max_frames 150"
        --latent_weights random
        --nj 2
        --inference_nj 2
        --ngpu 0
        --token_type phn --g2p espeak_ng_english_us_vits
        --train_config conf/tuning/train_sled_small_long.yaml
        --streaming_config ""
        --learning_curve_epochs 1
        --decode_modes offline
        --decode_max_utts 20
    )
elif [ "${mini}" = true ]; then
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
