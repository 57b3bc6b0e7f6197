# shellcheck shell=bash
# How jobs are launched. train_cmd: CPU jobs (data, latents, stats); cuda_cmd: training
# (gets --gpu N); decode_cmd: decoding array jobs. All take the run.pl interface:
#   ${train_cmd} JOB=1:N exp/log/x.JOB.log command args-with-JOB
# Pick a backend here:
#   local  run.pl on this machine (jobs in parallel up to the number of CPUs)
#   slurm  slurm.pl, reading conf/slurm.conf (partitions, memory, GPUs)
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        export train_cmd="run.pl"
        export cuda_cmd="run.pl"
        export decode_cmd="run.pl"
        ;;
    slurm)
        export train_cmd="slurm.pl --config conf/slurm.conf"
        export cuda_cmd="slurm.pl --config conf/slurm.conf"
        export decode_cmd="slurm.pl --config conf/slurm.conf"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (expected local or slurm)" >&2
        return 1
        ;;
esac
