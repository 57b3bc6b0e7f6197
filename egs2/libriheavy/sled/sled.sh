#!/usr/bin/env bash
# SLED-TTS recipe stages (the tts.sh of this recipe). Called by run.sh; see --help.
#
#  1 data prep        local/data.sh -> data/<set>/{wav.scp,segments,text,utt2spk,spk2utt}
#  2 latents          espnet2_sled.bin.extract_latents -> dump/latents/<set>/{feats.scp,speech_shape}
#  3 token list       sentencepiece on the training text -> dump/token_list/bpe_<mode><N>/
#  4 stats            drop utterances over the position limit, then sled_train --collect_stats, aggregate
#  5 training         espnet2.bin.launch ... sled_train
#  6 streaming tune   same, streaming config, initialised from stage 5
#  7 decoding         sled_inference array jobs -> exp/<tag>/decode_<mode>_<model>/<set>/{wav/,wav.scp,timing.jsonl}
#  8 scoring          espnet2_sled.bin.score -> scores.md / scores.json per decode dir; RESULTS.md
#  9 packing          espnet2.bin.pack tts -> exp/<tag>/<name>.zip, then decode one sentence from the zip
#
# --pretrained DIR_OR_ZIP fine-tunes a released or trained model (import_upstream's output, an
# exp dir, a packed .zip) on this data: its tokenizer replaces stage 3's, its latent space (if
# it carries one) stage 2's, its network shape the --train_config's tts_conf, and stage 5
# starts from its weights (local/pretrained_opts.py).
#
# Every stage appends the exact commands it runs to ${expdir}/run_logs/stage<N>.run.sh
# (replayable: it cds here and sources path.sh/cmd.sh). Stages skip work whose final
# output exists; final outputs are written under temp names and renamed when complete,
# so a killed run never leaves something that looks finished.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (sled.sh:${BASH_LINENO[0]}) $*" >&2; }
min() { local a=$1; shift; for b in "$@"; do [ "$b" -lt "$a" ] && a=$b; done; echo "$a"; }

# ---- general
stage=1
stop_stage=9
nj=32                  # parallel jobs for latent extraction and stats
inference_nj=32        # parallel decoding jobs
ngpu=1                 # GPUs for training (0: CPU)
num_nodes=1
gpu_inference=false
gpu_latents=false
python=python3
dumpdir=dump
expdir=exp
seed=0

# ---- data
local_data_opts=""
train_set=""
valid_set=""
test_sets=""
optional_test_sets=""  # decoded and scored only if data/<set> exists

# ---- latents (stage 2)
latent=encodec         # encodec | mel
latent_weights=random  # PATH to codec weights, or random (tests / mini recipe)
latent_opts=""

# ---- tokens (stage 3)
token_type=bpe
nbpe=256
bpemode=unigram
bpe_train_text=""      # default: data/${train_set}/text
g2p=none               # token_type phn: an ESPnet g2p, e.g. espeak_ng_english_us_vits (offline, espeak-ng)
token_list=""          # give --token_list and --bpemodel to use an existing (e.g. imported) tokenizer
cleaner=sled_english   # text front end for token list, training and (via config.yaml) decoding: numbers,
                       # currency and % in words, control characters removed (espnet2_sled/text_frontend.py); none: off
bpemodel=""

# ---- stats (stage 4)
stats_dir=""
max_positions=""       # default: tts_conf.max_positions of the train config, else 2048
extra_positions=2      # positions the layout adds besides text tokens and frames

# ---- training (stages 5, 6)
pretrained=""          # fine-tune this model (import_upstream dir, exp dir or packed .zip); see the top
train_config=""
train_args=""
tag=""
sled_exp=""
streaming_config=""    # stage 6 is skipped when empty
streaming_args=""
streaming_exp=""
init_model=valid.loss.best.pth
learning_curve_epochs=0 # stage 5, > 0: train this many epochs at a time, each chunk followed by a
                       # learning-curve row (local/learning_curve.py on the first test set)
text_fold_length=150
speech_fold_length=800

# ---- decoding and scoring (stages 7, 8)
inference_config=""
inference_args=""
inference_model=valid.loss.best.pth
decode_modes="offline" # any of: offline streaming clone continuation resynthesis
decode_max_utts=0      # > 0: decode only this many utterances per set (spread evenly over the sorted keys)
prompt_seconds=3       # continuation: prompt length
score_metrics="wer,spk_sim,dnsmos,rtf"
score_groundtruth=true # also score the real audio of each test set (ASR floor, DNSMOS of data)
check_learning=false   # stage 8: trained vs untrained model (held-out energy distance must improve)

# ---- packing (stage 9)
pack_name=""
pack_check_text="The quick brown fox jumps over the lazy dog."

help_message=$(cat <<EOF
Usage: $0 --train_set <set> --valid_set <set> --test_sets "<sets>" --train_config <yaml> [options]
  --stage N --stop_stage M   run stages N..M (1 data, 2 latents, 3 tokens, 4 stats, 5 train,
                             6 streaming fine-tune, 7 decode, 8 score, 9 pack)
  --nj N --inference_nj N --ngpu N --num_nodes N --gpu_inference true|false
  --latent encodec|mel --latent_weights PATH|random
  --nbpe N --bpemode unigram|bpe|char  or  --token_type phn --g2p NAME
                             or  --token_list tokens.txt --bpemodel bpe.model
  --train_config yaml --train_args "..." --tag name
  --pretrained DIR|ZIP       fine-tune a released/trained model (its tokenizer, shape and weights)
  --streaming_config yaml --streaming_args "..."
  --inference_model file.pth --inference_args "..." --decode_modes "offline streaming clone continuation"
Every variable at the top of sled.sh is an option (--name value or --name=value).
EOF
)

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi

# ---- fine-tuning a pretrained model: its tokenizer, latent space and shape replace the recipe's
pretrained_model=""
pretrained_odim=""
pretrained_streaming=false
if [ -n "${pretrained}" ]; then
    pretrained_assignments=$(${python} local/pretrained_opts.py --pretrained "${pretrained}" \
        --out "${expdir}/pretrained/$(basename "${pretrained}" .zip)" \
        --train_config "${train_config}" --streaming_config "${streaming_config}")
    eval "${pretrained_assignments}"
    log "fine-tuning ${pretrained_model} (its tokens ${token_list}, config ${train_config})"
fi

# ---- derived names
[ -z "${train_set}" ] && { echo "$0: --train_set is required" >&2; exit 1; }
[ -z "${valid_set}" ] && { echo "$0: --valid_set is required" >&2; exit 1; }
if [ -z "${token_list}" ]; then
    case "${token_type}" in
        bpe) token_dir=${dumpdir}/token_list/bpe_${bpemode}${nbpe}; bpemodel=${token_dir}/bpe.model ;;
        phn)
            if [ "${g2p}" = none ]; then
                echo "$0: --token_type phn needs --g2p (e.g. espeak_ng_english_us_vits)" >&2
                exit 1
            fi
            token_dir=${dumpdir}/token_list/phn_${g2p}; bpemodel=none ;;
        char) token_dir=${dumpdir}/token_list/char; bpemodel=none ;;
        *)
            echo "$0: stage 3 makes bpe, phn or char token lists; with --token_type ${token_type} give --token_list" >&2
            exit 1 ;;
    esac
    token_list=${token_dir}/tokens.txt
    own_tokens=true
else
    own_tokens=false
    [ -n "${bpemodel}" ] || bpemodel=none
fi
token_tag=$(basename "$(dirname "${token_list}")")  # names the stats dir: stats follow the tokenizer
latent_dir=${dumpdir}/latents
if [ -z "${tag}" ]; then
    if [ -n "${train_config}" ]; then
        tag=$(basename "${train_config}" .yaml)_${latent}_${token_type}
    else
        tag=sled_${latent}_${token_type}
    fi
fi
sled_exp=${sled_exp:-${expdir}/sled_${tag}}
streaming_exp=${streaming_exp:-${expdir}/sled_${tag}_streaming}
# a pretrained model that streams already is fine-tuned in its own layout (stage 5) and
# decoded as the streaming model; stage 6 has nothing to do
[ "${pretrained_streaming}" = true ] && streaming_exp=${sled_exp}
stats_dir=${stats_dir:-${expdir}/sled_stats_${latent}_${token_tag}}
run_logs=${expdir}/run_logs
recipe_dir=$(pwd)

find_test_sets() {  # test_sets plus the optional ones that stage 1 produced
    all_test_sets=${test_sets}
    for s in ${optional_test_sets}; do
        if [ -d "data/${s}" ]; then all_test_sets+=" ${s}"; fi
    done
}
find_test_sets

# ---- replayable command logs
stage_script=""
begin_stage() {  # begin_stage N "description"
    mkdir -p "${run_logs}"
    stage_script=${run_logs}/stage$1.run.sh
    {
        echo "#!/usr/bin/env bash"
        echo "# sled.sh stage $1: $2 (written $(date '+%Y-%m-%dT%H:%M:%S'))"
        echo "set -euo pipefail"
        echo "cd $(printf '%q' "${recipe_dir}")"
        echo ". ./path.sh"
        echo ". ./cmd.sh"
    } > "${stage_script}"
    chmod +x "${stage_script}"
    log "stage $1: $2 (commands: ${stage_script})"
}
run() {  # run CMD ARGS...: record the command in the stage script, then run it
    { printf '%q ' "$@"; echo; } >> "${stage_script}"
    "$@"
}
run_to() {  # run_to FILE CMD ARGS...: like run, with stdout written to FILE (via FILE.tmp)
    local out=$1
    shift
    { printf '%q ' "$@"; printf '> %q\n' "${out}"; } >> "${stage_script}"
    "$@" > "${out}.tmp"
    mv "${out}.tmp" "${out}"
}
note() { echo "# $*" >> "${stage_script}"; }

count_lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }

# jobs_env CMD NJOBS: "env OMP_NUM_THREADS=T" for NJOBS jobs that share this machine's cores
# (run.pl), nothing for a cluster backend. T = cores / NJOBS, at least 1, at most the
# OMP_NUM_THREADS already set: OpenMP threads that outnumber the cores spin against each
# other (mini recipe, 2 cores: 2 decoding jobs of 2 threads each took 147 s for what
# 2 jobs of 1 thread did in 16 s).
jobs_env() {
    case "$1" in run.pl*) ;; *) return 0 ;; esac
    local cores t
    cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)  # nproc reads OMP_NUM_THREADS
    t=$(( cores / $2 ))
    [ "${t}" -ge 1 ] || t=1
    [ -n "${OMP_NUM_THREADS:-}" ] && [ "${t}" -gt "${OMP_NUM_THREADS}" ] && t=${OMP_NUM_THREADS}
    echo "env OMP_NUM_THREADS=${t}"
}

# awk -v n=LINES -v m=MAX: the first field of every line, or of m evenly spaced lines when
# 0 < m < n (stage 7's --decode_max_utts subset; stage 8 scores the ground truth of the same keys)
subset_keys_awk='m <= 0 || m >= n || int((NR - 1) * m / n) != int(NR * m / n) { print $1 }'

latent_dim() {  # latent_dim SET: width of the latent frames, from speech_shape ("key T,D")
    local shape=${latent_dir}/$1/speech_shape
    [ -f "${shape}" ] || { echo "$0: ${shape} is missing; run stage 2" >&2; exit 1; }
    head -n 1 "${shape}" | awk '{ n = split($2, d, ","); print d[n] }'
}

require_file() {
    [ -f "$1" ] || { echo "$0: $1 does not exist. $2" >&2; exit 1; }
}

# ============================================================================ stage 1
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    begin_stage 1 "data preparation"
    # shellcheck disable=SC2086
    run local/data.sh ${local_data_opts}
    find_test_sets
    for s in ${train_set} ${valid_set} ${all_test_sets}; do
        run utils/validate_data_dir.sh "data/${s}"
    done
fi

# ============================================================================ stage 2
# espnet2_sled.bin.extract_latents, job J of N: DIR/feats.J.{ark,scp} + speech_shape.J,
# resumable (a restarted job skips what it already wrote); --merge true then writes
# DIR/feats.scp and DIR/speech_shape (+ bad_utts with --skip_bad true in latent_opts).
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    begin_stage 2 "latent extraction (${latent})"
    _ngpu=0; [ "${gpu_latents}" = true ] && _ngpu=1
    for s in ${train_set} ${valid_set} ${all_test_sets}; do
        out=${latent_dir}/${s}
        n_utt=$(count_lines "data/${s}/text")
        if [ -f "${out}/feats.scp" ] && \
           [ $(( $(count_lines "${out}/feats.scp") + $(count_lines "${out}/bad_utts") )) -eq "${n_utt}" ]; then
            log "${out}/feats.scp is complete (${n_utt} utterances); skipping"
            continue
        fi
        _nj=$(min "${nj}" "${n_utt}")
        mkdir -p "${out}/log"
        extract_opts=(--data_dir "data/${s}" --output_dir "${out}" --nj "${_nj}"
                      --latent "${latent}" --weights "${latent_weights}")
        # shellcheck disable=SC2046,SC2086
        run $(jobs_env "${train_cmd}" "${_nj}") ${train_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${out}/log/extract.JOB.log" \
            ${python} -m espnet2_sled.bin.extract_latents "${extract_opts[@]}" \
                --job JOB --ngpu "${_ngpu}" ${latent_opts}
        # shellcheck disable=SC2086
        run ${python} -m espnet2_sled.bin.extract_latents "${extract_opts[@]}" --merge true ${latent_opts}
        got=$(count_lines "${out}/feats.scp")
        [ "${got}" -eq "${n_utt}" ] || log "warning: ${out}/feats.scp has ${got} of ${n_utt} utterances (see ${out}/bad_utts)"
    done
fi

# ============================================================================ stage 3
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    begin_stage 3 "token list"
    if [ "${own_tokens}" = false ]; then
        require_file "${token_list}" "(--token_list)"
        [ "${token_type}" != bpe ] || require_file "${bpemodel}" "(--bpemodel)"
        log "using the given token list ${token_list} and model ${bpemodel}; nothing to train"
        note "given: --token_list ${token_list} --bpemodel ${bpemodel}"
    elif [ -f "${token_list}" ] && { [ "${token_type}" != bpe ] || [ -f "${bpemodel}" ]; }; then
        log "${token_list} exists; skipping"
    elif [ "${token_type}" = bpe ]; then
        run ${python} local/train_bpe.py --vocab_size "${nbpe}" --model_type "${bpemode}" \
            "${token_dir}" "${bpe_train_text:-data/${train_set}/text}" --cleaner "${cleaner}"
    else
        # ESPnet's own tool, as tts.sh does: the vocabulary of the training text. Run after
        # importing espnet2_sled, which defers g2p_en (it would try nltk.download at import).
        mkdir -p "${token_dir}"
        # the text as training reads it (--cleaner), then ESPnet's vocabulary of it
        run_to "${token_dir}/train_text.cleaned" ${python} local/clean_text.py --cleaner "${cleaner}" \
            "${bpe_train_text:-data/${train_set}/text}" -
        run ${python} -c 'import runpy, espnet2_sled; runpy.run_module("espnet2.bin.tokenize_text", run_name="__main__", alter_sys=True)' \
            --token_type "${token_type}" --g2p "${g2p}" \
            --cleaner none --input "${token_dir}/train_text.cleaned" --output "${token_list}.tmp" \
            --field 2- --write_vocabulary true \
            --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
        run mv "${token_list}.tmp" "${token_list}"
    fi
fi

# Data options shared by the stats stage, training and fine-tuning (training adds the
# filtered shape files, see train_data_opts).
data_opts() {
    local odim
    odim=$(latent_dim "${train_set}")
    echo --use_preprocessor true --token_type "${token_type}" --token_list "${token_list}" \
        --bpemodel "${bpemodel}" --cleaner "${cleaner}" --g2p "${g2p}" --normalize none --odim "${odim}" \
        --train_data_path_and_name_and_type "data/${train_set}/text,text,text" \
        --train_data_path_and_name_and_type "${latent_dir}/${train_set}/feats.scp,speech,kaldi_ark" \
        --valid_data_path_and_name_and_type "data/${valid_set}/text,text,text" \
        --valid_data_path_and_name_and_type "${latent_dir}/${valid_set}/feats.scp,speech,kaldi_ark"
}

# ============================================================================ stage 4
if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    begin_stage 4 "collect stats and filter by length"
    require_file "${train_config}" "(--train_config: the model config, needed to build the model)"
    if [ -z "${max_positions}" ]; then
        max_positions=$(${python} local/config_value.py "${train_config}" tts_conf.max_positions 2048)
    fi
    if [ -f "${stats_dir}/train/text_shape" ] && [ -f "${stats_dir}/valid/text_shape" ]; then
        log "${stats_dir} has the collected stats; skipping collection"
    else
        logdir=${stats_dir}/logdir
        mkdir -p "${logdir}"
        # Keys with both text and latents that fit in max_positions, decided *before* stats:
        # collect_stats (like training) refuses an utterance over the limit, so one over-long
        # cut would stop the stage. Token counts come from the training tokenizer, frames
        # from the latents' speech_shape; filter_by_length prints how many were dropped.
        for pair in "train:${train_set}" "valid:${valid_set}"; do
            name=${pair%%:*}; s=${pair#*:}
            run_to "${logdir}/${name}.text" utils/filter_scp.pl "${latent_dir}/${s}/feats.scp" "data/${s}/text"
        done
        run ${python} local/count_tokens.py --token_type "${token_type}" --token_list "${token_list}" \
            --bpemodel "${bpemodel}" --g2p "${g2p}" --cleaner "${cleaner}" \
            "${logdir}/train.text" "${logdir}/train.text_lengths" "${logdir}/valid.text" "${logdir}/valid.text_lengths"
        for pair in "train:${train_set}" "valid:${valid_set}"; do
            name=${pair%%:*}; s=${pair#*:}
            run ${python} local/filter_by_length.py \
                --max_positions "${max_positions}" --extra_positions "${extra_positions}" \
                "${logdir}/${name}.text_lengths" "${latent_dir}/${s}/speech_shape" \
                "${logdir}/${name}.text_lengths.fit" "${logdir}/${name}.speech_shape.fit"
            run_to "${logdir}/${name}.keys" utils/filter_scp.pl "${logdir}/${name}.text_lengths.fit" "${logdir}/${name}.text"
        done
        _nj=$(min "${nj}" "$(count_lines "${logdir}/train.keys")" "$(count_lines "${logdir}/valid.keys")")
        split_args_train=""; split_args_valid=""
        for n in $(seq "${_nj}"); do
            split_args_train+=" ${logdir}/train.${n}.scp"
            split_args_valid+=" ${logdir}/valid.${n}.scp"
        done
        # shellcheck disable=SC2086
        run utils/split_scp.pl "${logdir}/train.keys" ${split_args_train}
        # shellcheck disable=SC2086
        run utils/split_scp.pl "${logdir}/valid.keys" ${split_args_valid}
        # shellcheck disable=SC2046,SC2086
        run $(jobs_env "${train_cmd}" "${_nj}") ${train_cmd} JOB=1:"${_nj}" "${logdir}/stats.JOB.log" \
            ${python} -m espnet2_sled.bin.sled_train \
                --collect_stats true \
                --ngpu 0 \
                --config "${train_config}" \
                $(data_opts) \
                --train_shape_file "${logdir}/train.JOB.scp" \
                --valid_shape_file "${logdir}/valid.JOB.scp" \
                --output_dir "${logdir}/stats.JOB" \
                ${train_args}
        stats_inputs=()
        for n in $(seq "${_nj}"); do stats_inputs+=(--input_dir "${logdir}/stats.${n}"); done
        run ${python} -m espnet2.bin.aggregate_stats_dirs "${stats_inputs[@]}" --output_dir "${stats_dir}"
    fi
    # The length filter depends on the model config, so it always runs (seconds); the model's
    # own check (SLEDInputCheck, SLED.check_batch) stays as the last guard.
    vocab_size=$(count_lines "${token_list}")
    for name in train valid; do
        run ${python} local/filter_by_length.py \
            --max_positions "${max_positions}" --extra_positions "${extra_positions}" \
            --append_vocab_size "${vocab_size}" \
            "${stats_dir}/${name}/text_shape" "${stats_dir}/${name}/speech_shape" \
            "${stats_dir}/${name}/text_shape.${token_type}" "${stats_dir}/${name}/speech_shape.filtered"
    done
    # Frames per text token of the training data: stored with the model (tts_conf) so that
    # decoding can name output implausibly short for its text (espnet2_sled/decode_report.py).
    run ${python} local/frames_per_token.py "${stats_dir}/train/text_shape.${token_type}" \
        "${stats_dir}/train/speech_shape.filtered" "${stats_dir}/train/frames_per_token.json"
fi

# Options shared by training and fine-tuning: the data, and the length-filtered shape files.
train_data_opts() {
    # shellcheck disable=SC2046
    echo $(data_opts) \
        --train_shape_file "${stats_dir}/train/text_shape.${token_type}" \
        --train_shape_file "${stats_dir}/train/speech_shape.filtered" \
        --valid_shape_file "${stats_dir}/valid/text_shape.${token_type}" \
        --valid_shape_file "${stats_dir}/valid/speech_shape.filtered" \
        --fold_length "${text_fold_length}" --fold_length "${speech_fold_length}"
}

# The latent space the latents were extracted with (dump/latents/<train>/latent.yaml) is
# attached to the model, so that decoding produces audio and encodes voice prompts.
latent_model_opts() {
    ${python} local/latent_model_opts.py "${latent_dir}/${train_set}/latent.yaml" "${latent_weights}"
}

# tts_conf.min_frames_per_token from stage 4's frames_per_token.json (nothing if it is missing).
frames_per_token_opts() {
    ${python} local/frames_per_token.py --opts "${stats_dir}/train/frames_per_token.json"
}

train_one() {  # train_one EXP_DIR CONFIG EXTRA_ARGS...
    local exp=$1 config=$2
    shift 2
    mkdir -p "${exp}"
    local jobname
    jobname=$(basename "${exp}")
    # shellcheck disable=SC2046
    run ${python} -m espnet2.bin.launch \
        --cmd "${cuda_cmd} --name ${jobname}" \
        --log "${exp}/train.log" \
        --ngpu "${ngpu}" \
        --num_nodes "${num_nodes}" \
        --init_file_prefix "${exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        ${python} -m espnet2_sled.bin.sled_train \
            --config "${config}" \
            $(train_data_opts) \
            $(latent_model_opts) \
            $(frames_per_token_opts) \
            --resume true \
            --output_dir "${exp}" \
            "$@"
}

# ============================================================================ stage 5
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    begin_stage 5 "training (${sled_exp})"
    require_file "${train_config}" "(--train_config)"
    require_file "${stats_dir}/train/text_shape.${token_type}" "Run stage 4 first."
    if [ "${learning_curve_epochs}" -gt 0 ]; then
        # train in chunks (--resume: each chunk continues from the last epoch), then decode
        # the first test set free-running and append (updates, held-out ED, WER) to
        # ${sled_exp}/learning_curve.tsv; chunks whose row exists are skipped
        s=$(echo ${all_test_sets} | cut -d' ' -f1)
        max_epoch=$(${python} local/config_value.py "${train_config}" max_epoch 100)
        for (( e = learning_curve_epochs; e <= max_epoch; e += learning_curve_epochs )); do
            ${python} local/learning_curve.py --exp "${sled_exp}" --has_row "${e}" && continue
            # shellcheck disable=SC2086
            train_one "${sled_exp}" "${train_config}" ${train_args} --max_epoch "${e}"
            # shellcheck disable=SC2086
            run ${python} local/learning_curve.py --exp "${sled_exp}" --epoch "${e}" \
                --data "data/${s}" --latents "${latent_dir}/${s}/feats.scp" --max_utts "${decode_max_utts}" \
                --seed "${seed}" ${inference_args}
        done
    elif [ -n "${pretrained_model}" ]; then
        got_dim=$(latent_dim "${train_set}")
        if [ "${got_dim}" != "${pretrained_odim}" ]; then
            echo "$0: the latents of ${train_set} are ${got_dim} wide but ${pretrained} makes ${pretrained_odim}-wide" \
                 "frames; extract them (stage 2) with the model's latent space (--latent/--latent_opts)" >&2
            exit 1
        fi
        # its weights, all but the latent space (attached from the latents' own, latent_model_opts)
        # shellcheck disable=SC2086
        train_one "${sled_exp}" "${train_config}" --init_param "${pretrained_model}:::tts.latent_space" ${train_args}
    else
        # shellcheck disable=SC2086
        train_one "${sled_exp}" "${train_config}" ${train_args}
    fi
fi

# ============================================================================ stage 6
streaming_enabled=false
if [ -n "${streaming_config}" ]; then
    if [ -f "${streaming_config}" ]; then
        streaming_enabled=true
    else
        log "warning: streaming config ${streaming_config} not found; no streaming fine-tune or streaming decoding"
    fi
fi
[ "${pretrained_streaming}" = true ] && streaming_enabled=true
if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    begin_stage 6 "streaming fine-tune (${streaming_exp})"
    if [ "${pretrained_streaming}" = true ]; then
        note "skipped: the pretrained model streams; stage 5 fine-tuned it in its own layout"
    elif [ "${streaming_enabled}" = true ]; then
        require_file "${sled_exp}/${init_model}" "Train the offline model first (stage 5)."
        # shellcheck disable=SC2086
        train_one "${streaming_exp}" "${streaming_config}" --init_param "${sled_exp}/${init_model}" ${streaming_args}
    else
        note "skipped: no streaming config"
    fi
fi

# ============================================================================ stage 7
decode_dir() {  # decode_dir MODE -> model exp dir and output root for that mode
    if [ "$1" = streaming ]; then
        echo "${streaming_exp}/decode_$1_${inference_model%.pth}"
    else
        echo "${sled_exp}/decode_$1_${inference_model%.pth}"
    fi
}
if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    begin_stage 7 "decoding (${decode_modes})"
    _ngpu=0; [ "${gpu_inference}" = true ] && _ngpu=1
    for mode in ${decode_modes}; do
        case "${mode}" in
            offline) exp=${sled_exp}; mode_opts=() ;;
            streaming)
                if [ "${streaming_enabled}" = false ]; then log "no streaming model; skipping streaming decoding"; continue; fi
                exp=${streaming_exp}; mode_opts=(--streaming true) ;;
            clone|continuation) exp=${sled_exp}; mode_opts=() ;;
            resynthesis)  # the latent space's upper bound: reference latents -> audio
                exp=${sled_exp}; mode_opts=(--use_teacher_forcing true) ;;
            *) echo "$0: unknown decode mode '${mode}' (offline streaming clone continuation resynthesis)" >&2; exit 1 ;;
        esac
        require_file "${exp}/${inference_model}" "Train the model first (stage 5/6)."
        for s in ${all_test_sets}; do
            out=$(decode_dir "${mode}")/${s}
            keys=${out}/logdir/keys
            mkdir -p "${out}/logdir"
            set_opts=("${mode_opts[@]}")
            if [ "${mode}" = clone ] || [ "${mode}" = continuation ]; then
                # clone: the prompt is another utterance of the same speaker (audio + its
                # transcript). continuation: the model continues the utterance's own first
                # ${prompt_seconds} s (its latents); the prompt wavs are cut only for scoring.
                if [ ! -f "${out}/prompts/prompt_wav.scp" ]; then
                    run ${python} local/make_prompts.py --mode "${mode}" --seconds "${prompt_seconds}" \
                        "data/${s}" "${out}/prompts"
                fi
                if [ "${mode}" = clone ]; then
                    set_opts+=(--prompt_wav_scp "${out}/prompts/prompt_wav.scp" --prompt_text "${out}/prompts/prompt_text")
                else
                    set_opts+=(--continuation_seconds "${prompt_seconds}"
                               --data_path_and_name_and_type "${latent_dir}/${s}/feats.scp,speech,kaldi_ark")
                fi
                run_to "${keys}" cut -d' ' -f1 "${out}/prompts/prompt_wav.scp"
            elif [ "${mode}" = resynthesis ]; then
                set_opts+=(--data_path_and_name_and_type "${latent_dir}/${s}/feats.scp,speech,kaldi_ark")
                run_to "${keys}" cut -d' ' -f1 "data/${s}/text"
            else
                run_to "${keys}" cut -d' ' -f1 "data/${s}/text"
            fi
            if [ "${decode_max_utts}" -gt 0 ] && [ "$(count_lines "${keys}")" -gt "${decode_max_utts}" ]; then
                run_to "${keys}.subset" awk -v n="$(count_lines "${keys}")" -v m="${decode_max_utts}" \
                    "${subset_keys_awk}" "${keys}"
                mv "${keys}.subset" "${keys}"
            fi
            n_utt=$(count_lines "${keys}")
            if [ -f "${out}/.done" ] && [ "${out}/.done" -nt "${exp}/${inference_model}" ] && \
               [ "$(awk '{ print $1 + $3 }' "${out}/.done")" -eq "${n_utt}" ]; then
                log "${out} is complete ($(cat "${out}/.done")); skipping"
                continue
            fi
            # not resumable per utterance: start this set afresh
            rm -rf "${out}/.done" "${out}/wav" "${out}/wav.scp" "${out}"/logdir/output.*
            _nj=$(min "${inference_nj}" "${n_utt}")
            split_args=()
            for n in $(seq "${_nj}"); do split_args+=("${out}/logdir/keys.${n}.scp"); done
            run utils/split_scp.pl "${keys}" "${split_args[@]}"
            config_opts=()
            [ -n "${inference_config}" ] && config_opts=(--config "${inference_config}")
            # shellcheck disable=SC2046,SC2086
            run $(jobs_env "${decode_cmd}" "${_nj}") ${decode_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${out}/logdir/inference.JOB.log" \
                ${python} -m espnet2_sled.bin.sled_inference \
                    --ngpu "${_ngpu}" \
                    --data_path_and_name_and_type "data/${s}/text,text,text" \
                    --key_file "${out}/logdir/keys.JOB.scp" \
                    --train_config "${exp}/config.yaml" \
                    --model_file "${exp}/${inference_model}" \
                    --output_dir "${out}/logdir/output.JOB" \
                    --seed "${seed}" \
                    --allow_empty_output true \
                    "${config_opts[@]}" "${set_opts[@]}" ${inference_args}
            run ${python} local/merge_decode.py --nj "${_nj}" --keys "${keys}" "${out}"
        done
    done
fi

# ============================================================================ stage 8
# One scoring job per (mode, set) plus the ground truth of each set, run as an array
# through ${decode_cmd} (each job loads the scorers once).
if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    begin_stage 8 "scoring"
    results=()
    tasks=()
    add_task() {  # add_task OUT_DIR ARGS...: score unless OUT_DIR/scores.json is newer than the input
        local out=$1
        shift
        results+=("${out}/scores.md")
        if [ -f "${out}/scores.json" ] && [ "${out}/scores.json" -nt "$2" ]; then
            log "${out} is up to date; skipping"
            return
        fi
        tasks+=("$(printf '%q ' ${python} -m espnet2_sled.bin.score "$@" --output_dir "${out}")")
    }
    if [ "${score_groundtruth}" = true ]; then
        for s in ${all_test_sets}; do
            # the same utterances stage 7 decodes (all, or the --decode_max_utts subset)
            gt=${expdir}/groundtruth_scores/${s}
            [ "${decode_max_utts}" -gt 0 ] && gt+=_subset${decode_max_utts}
            mkdir -p "${gt}"
            run_to "${gt}/keys" awk -v n="$(count_lines "data/${s}/text")" -v m="${decode_max_utts}" \
                "${subset_keys_awk}" "data/${s}/text"
            add_task "${gt}" --wav_scp "data/${s}/wav.scp" --segments "data/${s}/segments" \
                --keys "${gt}/keys" --text "data/${s}/text" --metrics wer,dnsmos \
                --title "ground truth: ${s} ($(count_lines "${gt}/keys") utterances)"
        done
    fi
    for mode in ${decode_modes}; do
        for s in ${all_test_sets}; do
            out=$(decode_dir "${mode}")/${s}
            if [ ! -f "${out}/.done" ]; then
                log "warning: ${out} is not decoded (stage 7 skipped or not run); not scored"
                continue
            fi
            prompt_opts=()
            [ -f "${out}/prompts/prompt_wav.scp" ] && prompt_opts=(--prompt_wav_scp "${out}/prompts/prompt_wav.scp")
            add_task "${out}/scores" --wav_scp "${out}/wav.scp" --expected_keys "${out}/logdir/keys" \
                --text "data/${s}/text" \
                --ref_wav_scp "data/${s}/wav.scp" --ref_segments "data/${s}/segments" \
                "${prompt_opts[@]}" --timing "${out}/timing.jsonl" \
                --metrics "${score_metrics}" --title "${mode}: ${s} (${out})"
        done
    done
    if [ ${#tasks[@]} -gt 0 ]; then
        task_dir=${expdir}/run_logs/stage8_tasks
        rm -rf "${task_dir}"
        mkdir -p "${task_dir}"
        for i in "${!tasks[@]}"; do
            echo "${tasks[$i]}" > "${task_dir}/score.$((i + 1)).sh"
            note "task $((i + 1)): ${tasks[$i]}"
        done
        # shellcheck disable=SC2046,SC2086
        run $(jobs_env "${decode_cmd}" "$(min "${inference_nj}" "${#tasks[@]}")") ${decode_cmd} --max-jobs-run "${inference_nj}" JOB=1:${#tasks[@]} "${task_dir}/score.JOB.log" \
            bash "${task_dir}/score.JOB.sh"
    fi
    if [ "${check_learning}" = true ]; then
        # trained vs untrained on the first test set: held-out energy distance (must be
        # lower, else this stage fails) and WER of the offline decoding (reported)
        s=$(echo ${all_test_sets} | cut -d' ' -f1)
        out=$(decode_dir offline)/${s}
        require_file "${out}/.done" "check_learning needs the offline decoding of ${s} (stage 7)."
        # the untrained model decodes under the same frame cap as stage 7
        cap=$(echo " ${inference_args} " | sed -n 's/.* --max_frames[ =]\([0-9][0-9]*\) .*/\1/p')
        run ${python} local/check_learning.py --exp "${sled_exp}" --model "${inference_model}" \
            --data "data/${s}" --latents "${latent_dir}/${s}/feats.scp" --decode_dir "${out}" \
            --out "${sled_exp}/learning" ${cap:+--max_frames "${cap}"}
        results+=("${sled_exp}/learning/learning.md")
    fi
    if [ ${#results[@]} -gt 0 ]; then
        mkdir -p "${sled_exp}"
        { echo "# SLED results ($(date '+%Y-%m-%d'))"; echo; for r in "${results[@]}"; do cat "${r}"; echo; done; } \
            > "${sled_exp}/RESULTS.md.tmp"
        mv "${sled_exp}/RESULTS.md.tmp" "${sled_exp}/RESULTS.md"
        log "results: ${sled_exp}/RESULTS.md"
        cat "${sled_exp}/RESULTS.md" >&2
    fi
fi

# ============================================================================ stage 9
if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
    begin_stage 9 "packing"
    for exp in "${sled_exp}" "${streaming_exp}"; do
        [ "${exp}" = "${packed_exp:-}" ] && continue  # a fine-tuned streaming pretrained model is both
        packed_exp=${exp}
        [ -f "${exp}/${inference_model}" ] || { [ "${exp}" = "${streaming_exp}" ] && continue; }
        require_file "${exp}/${inference_model}" "Train the model first (stage 5)."
        name=${pack_name:-$(basename "${exp}")_${inference_model%.pth}}
        [ "${exp}" = "${streaming_exp}" ] && [ -n "${pack_name}" ] && name=${pack_name}_streaming
        zip=${exp}/${name}.zip
        if [ ! -f "${zip}" ]; then
            pack_opts=()
            # the tokenizer model: sentencepiece (bpe) or a pretrained model's byte-level BPE
            [ "${bpemodel}" != none ] && pack_opts+=(--option "${bpemodel}")
            [ -d "${exp}/images" ] && pack_opts+=(--option "${exp}/images")
            [ -f "${sled_exp}/RESULTS.md" ] && pack_opts+=(--option "${sled_exp}/RESULTS.md")
            run ${python} -m espnet2.bin.pack tts \
                --train_config "${exp}/config.yaml" \
                --model_file "${exp}/${inference_model}" \
                "${pack_opts[@]}" \
                --outpath "${exp}/${name}.tmp.zip"
            run mv "${exp}/${name}.tmp.zip" "${zip}"
        fi
        run ${python} local/check_pack.py --text "${pack_check_text}" --output "${exp}/${name}.check.wav" "${zip}"
    done
fi

log "stages ${stage}..${stop_stage} done"
