#!/usr/bin/env bash
# The GPU campaign (issue #25): one non-interactive command for a short GPU window (torch only,
# no ESPnet, no network). It stops itself before CAMPAIGN_SECONDS and writes under $OUT as it
# goes, so a window cut short still returns something (at most 7 files, each under 16 MiB):
#   campaign.log   everything printed, with GPU use sampled every 30 s
#   decode.txt     (a) the decode rows of bench/run_gpu.sh cut to ~3 minutes: graph vs eager
#                  equality, decode step at batch 1-64 with bf16 rows, streaming first audio
#   curve.tsv      (b) a learning-curve row per configuration per minute: held-out teacher-forced
#                  energy distance with own / other / no text (bench/campaign_train.py)
#   small.pth small_framedrop.pth wide.pth
#                  (b) the latest fp16 checkpoint of each configuration, rewritten each minute
# (b) trains the one-voice model from scratch on the pack (bench/gpu_pack.sh), three
# configurations side by side on the one GPU for the same minutes, bf16 autocast (the energy
# distance in fp32), ~4.4 minutes of audio per update (batch_bins 1600000):
#   small            the long run's config (4.5 M parameters)
#   small_framedrop  the same, hiding fed-back frames whole with probability 0.5 (frame_drop)
#   wide             dim 320, 5 heads (7.0 M parameters; fp16 checkpoint 14 MB), frame_drop 0.5
#
# The exact call with the `run` tool (the pack made first here by bench/gpu_pack.sh; it travels
# as an ignored path, 37.4 MiB):
#   run(command="bash bench/gpu_campaign.sh", carry=["egs2/libriheavy/sled/dump_long/gpu_pack"],
#       timeout_s=560)
# The campaign ends by itself at CAMPAIGN_SECONDS=520 (8.7 min); timeout_s 560 is the backstop.
# With start-up (a few minutes) that is most of the 15-minute window; a call that fails in its
# first minute (it checks the pack, torch and CUDA first) leaves time for a rerun.
# Back on the CPU, one command per checkpoint (README of the recipe, "The GPU campaign"):
#   cd egs2/libriheavy/sled && python ../../../bench/campaign_score.py --ckpt <files_at>/small.pth --name gpu_small
#
# Environment: OUT (required), CAMPAIGN_SECONDS (520), PACK, PYTHON (python, else python3), DECODE_SECONDS (180),
# BATCH_BINS (1600000);
# DRY_RUN=1: the CI check on the CPU (no decode rows, 3 updates of each configuration on the
# first 8 training utterances, bf16 autocast on the CPU, a learning-curve row after every update).
set -uo pipefail  # no -e: one part failing must not cost the others their results
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the results go to}"
budget=${CAMPAIGN_SECONDS:-520}
decode_budget=${DECODE_SECONDS:-180}
pack=${PACK:-egs2/libriheavy/sled/dump_long/gpu_pack/long.pack}
py=${PYTHON:-$(command -v python || command -v python3)}
dry=${DRY_RUN:-0}
start=$(date +%s)
mkdir -p "$OUT"
log=$OUT/campaign.log
left() { echo $(( budget - ($(date +%s) - start) )); }
say() { echo "[campaign $(( $(date +%s) - start ))s] $*" | tee -a "$log"; }

say "budget ${budget} s, pack ${pack}, dry run ${dry}"
if [ ! -f "$pack" ]; then
    say "no pack at ${pack}: make it with bench/gpu_pack.sh and pass it with carry (see the top of this script)"
    exit 1
fi
if [ "$dry" = 1 ]; then
    device=cpu
    train_opts=(--device cpu --bf16 --max_updates 3 --max_train_utts 8 --eval_every_s 0)
else
    device=cuda
    train_opts=(--bf16 --eval_every_s 60)
    if ! $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >> "$log" 2>&1; then
        say "torch sees no CUDA device: stopping (this campaign is for a GPU; DRY_RUN=1 checks it on the CPU)"
        exit 1
    fi
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv >> "$log" 2>&1
fi
$py -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)' >> "$log" 2>&1

# ---- (a) decode rows, each part capped; rows land in decode.txt as they are printed
if [ "$dry" != 1 ]; then
    decode_end=$(( $(date +%s) + decode_budget ))
    part() {  # part SECONDS CMD...: run with at most SECONDS (and never past the decode budget)
        local cap=$1 room
        shift
        room=$(( decode_end - $(date +%s) ))
        [ "$room" -lt "$cap" ] && cap=$room
        if [ "$cap" -lt 10 ]; then say "decode budget spent; skipped: $*"; return; fi
        say "decode part (max ${cap} s): $*"
        echo "== $* (max ${cap} s)" >> "$OUT/decode.txt"
        timeout -k 5 "$cap" "$py" "$@" >> "$OUT/decode.txt" 2>&1
        local rc=$?
        [ "$rc" = 0 ] || say "decode part ended with status ${rc} (124: cut at its time cap)"
    }
    part 45 bench/decode_equality.py --configs debug paper
    part 100 bench/bench_sled.py --configs paper small --no_train --decode_batches 1 8 32 64 --precision --no_recompute
    part 40 bench/bench_streaming.py --configs paper
fi

# ---- (b) training, the configurations side by side for the same minutes
train_seconds=$(( $(left) - 25 ))  # 25 s left for the last rows and checkpoints to land
if [ "$train_seconds" -lt 90 ]; then
    say "only ${train_seconds} s left for training: skipped"
    exit 0
fi
minutes=$(awk -v s="$train_seconds" 'BEGIN { printf "%.2f", (s - 45) / 60 }')  # 45 s: start-up, last row
bins=${BATCH_BINS:-1600000}  # a guess (no GPU run yet): the GPU-use samples in campaign.log say whether to raise it
# the long run's peak and floor learning rates, its 200-update warm-up, the decay over 5000 updates
schedule="batch_bins=${bins} warmup_steps_list=[0,200,5000] warmup_lr_list=[0.0,0.002,0.0002]"
declare -A configs=(
    [small]="${schedule}"
    [small_framedrop]="${schedule} frame_drop=0.5"
    [wide]="${schedule} frame_drop=0.5 dim=320 heads=5 ffn_dim=864 generator_width=320"
)
say "training ${!configs[*]} side by side for ${minutes} min each (${train_seconds} s cap)"
pids=()
for name in small small_framedrop wide; do
    # shellcheck disable=SC2086
    timeout -k 10 "$train_seconds" "$py" bench/campaign_train.py --pack "$pack" --name "$name" \
        --out "$OUT/$name" --curve "$OUT/curve.tsv" --minutes "$minutes" "${train_opts[@]}" \
        --set ${configs[$name]} >> "$log" 2>&1 &
    pids+=($!)
done
if [ "$device" = cuda ]; then
    (while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$log" 2>&1; done) &
    sampler=$!
fi
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
[ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null
rm -f "$OUT"/*.tmp
say "done (training status ${status}); files: $(cd "$OUT" && ls | tr '\n' ' ')"
exit "$status"
