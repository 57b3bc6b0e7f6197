#!/usr/bin/env bash
# Stage 1: LibriHeavy manifests -> Kaldi data dirs data/<subset>/{wav.scp,segments,text,utt2spk,spk2utt}.
#
#   local/data.sh [--mini true] [--subsets "small dev test_clean test_other"]
#
# Real data: reads ${LIBRIHEAVY}/libriheavy_cuts_<subset>.jsonl[.gz] (db.sh) with audio
# under ${LIBRILIGHT}. --mini true: synthesises a small corpus in the same format under
# downloads/mini_libriheavy (flite + espeak-ng, ~1 min) and prepares mini_{train,dev,test}
# (+ librivox_test when pocketsphinx-testdata is installed). --mini_prefix/--mini_voices/
# --mini_generated_train/--mini_num_test pass make_mini_corpus.py options (the long-run corpus
# of run.sh --long true: one voice, generated sentences, sets <prefix>_{train,dev,test}).
# A data dir that already validates is left alone (use --force true to rebuild).
set -euo pipefail

mini=false
subsets="small dev test_clean test_other"
manifest_dir=""        # default: ${LIBRIHEAVY} from db.sh
audio_root=""          # default: ${LIBRILIGHT} from db.sh
mini_dir=downloads/mini_libriheavy
mini_prefix=mini       # set names <prefix>_{train,dev,test}
mini_voices=""         # comma-separated make_mini_corpus.py voices (default: all six)
mini_generated_train=0 # training-only generated sentences
mini_num_test=""       # test sentences (default: make_mini_corpus.py's)
check_audio=true
force=false
python=python3
help_message="Usage: $0 [--mini true|false] [--subsets \"small dev test_clean test_other\"] [--manifest_dir DIR] [--audio_root DIR] [--force true]"

. ./path.sh
. ./db.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*" >&2; }

if [ "${mini}" = true ]; then
    if [ ! -f "${mini_dir}/manifests/libriheavy_cuts_${mini_prefix}_train.jsonl.gz" ]; then
        log "synthesising the mini corpus into ${mini_dir}"
        mkdir -p "$(dirname "${mini_dir}")"
        corpus_opts=(--prefix "${mini_prefix}" --generated_train "${mini_generated_train}")
        [ -n "${mini_voices}" ] && corpus_opts+=(--voices "${mini_voices}")
        [ -n "${mini_num_test}" ] && corpus_opts+=(--num_test "${mini_num_test}")
        ${python} local/make_mini_corpus.py "${mini_dir}" "${corpus_opts[@]}"
    else
        log "mini corpus already in ${mini_dir}"
    fi
    manifest_dir=${mini_dir}/manifests
    audio_root=${mini_dir}
    subsets="${mini_prefix}_train ${mini_prefix}_dev ${mini_prefix}_test"
    if [ -f "${manifest_dir}/libriheavy_cuts_librivox_test.jsonl" ]; then
        subsets+=" librivox_test"
    fi
fi

manifest_dir=${manifest_dir:-${LIBRIHEAVY}}
audio_root=${audio_root:-${LIBRILIGHT}}
if [ -z "${manifest_dir}" ] || [ -z "${audio_root}" ]; then
    echo "$0: set LIBRIHEAVY (manifest dir) and LIBRILIGHT (audio root) in db.sh, or pass --mini true" >&2
    exit 1
fi

for subset in ${subsets}; do
    out=data/${subset}
    if [ "${force}" = false ] && [ -f "${out}/spk2utt" ] && utils/validate_data_dir.sh "${out}" 2>/dev/null; then
        log "${out} is complete; skipping"
        continue
    fi
    manifest=""
    for candidate in "${manifest_dir}/libriheavy_cuts_${subset}.jsonl.gz" \
                     "${manifest_dir}/libriheavy_cuts_${subset}.jsonl" \
                     "${manifest_dir}/${subset}.jsonl.gz" "${manifest_dir}/${subset}.jsonl"; do
        if [ -f "${candidate}" ]; then manifest=${candidate}; break; fi
    done
    if [ -z "${manifest}" ]; then
        echo "$0: no manifest for subset '${subset}' in ${manifest_dir} (looked for libriheavy_cuts_${subset}.jsonl[.gz] and ${subset}.jsonl[.gz])" >&2
        exit 1
    fi
    log "${manifest} -> ${out}"
    mkdir -p data
    ${python} local/prepare_libriheavy.py --check_audio "${check_audio}" "${manifest}" "${audio_root}" "${out}"
    utils/fix_data_dir.sh "${out}"
done
log "done: ${subsets}"
