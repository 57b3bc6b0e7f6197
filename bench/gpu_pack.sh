#!/usr/bin/env bash
# The GPU campaign's data (issue #25), made on a fresh checkout by one command, here (CPU, ESPnet):
#   bash bench/gpu_pack.sh        # ~35-40 min on a loaded 2-core machine, most of it synthesis
# 1. the long run's corpus: egs2/libriheavy/sled/run.sh --mini true --long true, stages 1-4
#    (one flite voice, 4230 training sentences, phonemes, 25-Hz log-mel; resumable: finished
#    stages are skipped by their own checks when rerun);
# 2. a template exp, exp_long/gpu_template: one update of the long run's config with the
#    recipe's own stage 5, so its config.yaml is the one ESPnet writes for this data (token
#    list, cleaner, g2p, latent space); the pack carries it, and checkpoints trained from the
#    pack unpack into exp dirs the recipe decodes;
# 3. the pack, dump_long/gpu_pack/long.pack (ignored by git; it travels with the `run` tool's
#    carry): token ids and 6-bit latents (a scale per utterance) of train / dev / test (bench/latent_pack.py), then
#    its round-trip check against the recipe's latents.
# OMP_NUM_THREADS defaults to 1 here (a shared machine); nice it yourself if others work on it.
set -euo pipefail
cd "$(dirname "$0")/../egs2/libriheavy/sled"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
py=${PYTHON:-python}
t0=$(date +%s)
./run.sh --mini true --long true --stage 1 --stop_stage 4
t1=$(date +%s)
if [ ! -f exp_long/gpu_template/valid.loss.best.pth ]; then
    ./run.sh --mini true --long true --stage 5 --stop_stage 5 --learning_curve_epochs 0 \
        --sled_exp exp_long/gpu_template --train_args "--max_epoch 1 --num_iters_per_epoch 1"
fi
t2=$(date +%s)
$py ../../../bench/latent_pack.py make --exp exp_long/gpu_template --out dump_long/gpu_pack/long.pack
$py ../../../bench/latent_pack.py check --pack dump_long/gpu_pack/long.pack
t3=$(date +%s)
echo "gpu_pack.sh: corpus $(( t1 - t0 )) s, template exp $(( t2 - t1 )) s, pack + check $(( t3 - t2 )) s"
