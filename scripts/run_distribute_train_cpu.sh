#!/bin/bash
# Data-parallel training on DEVICE_NUM CPU workers of this machine through msrun (MindSpore's launcher); each rank
# reads its shard. Outputs in ./train_parallel: log (msrun), msrun_log/worker_<rank>.log, loss_<rank>.log,
# save_ckpt/ckpt_0/*.ckpt (rank 0 only unless --save_on_master=False).
# Extra --key=value arguments go to train.py. MASTER_PORT (default 8118) is msrun's port.
# FOREGROUND=1 waits and returns msrun's exit status (default: background, as the original).
USAGE="Usage: bash run_distribute_train_cpu.sh [DEVICE_NUM] [PRETRAINED_MODEL|none] [COCO_ROOT] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 3 4
check_positive_int DEVICE_NUM "${ARGS[0]}"
check_pretrained "${ARGS[1]}"
check_data "${ARGS[2]}" "${ARGS[3]}"
MSRUN=$(dirname "$PYTHON")/msrun
[ -x "$MSRUN" ] || MSRUN=msrun
command -v "$MSRUN" > /dev/null || die "msrun (MindSpore's launcher) not found next to $PYTHON nor on PATH"

export RANK_SIZE=${ARGS[0]}
# msrun starts `python` from PATH: make it the one that has MindSpore.
export PATH=$(dirname "$PYTHON"):$PATH
mkdir -p train_parallel && cd train_parallel || exit 1
env > env.log
echo "start training on $RANK_SIZE CPU workers in $PWD"
run_logged log "$MSRUN" --worker_num="$RANK_SIZE" --local_worker_num="$RANK_SIZE" --master_port="${MASTER_PORT:-8118}" \
    --log_dir=msrun_log --join=True "$ROOT/train.py" --config_path="$ROOT/default_config_cpu.yaml" --device_target=CPU \
    --run_distribute=True --device_num="$RANK_SIZE" --coco_root="$COCO_ROOT" --mindrecord_dir="$MINDRECORD_DIR" \
    --pre_trained="$PRETRAINED" "${OPTIONS[@]}"
