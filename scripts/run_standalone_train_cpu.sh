#!/bin/bash
# Train on the CPU, one process. Outputs in ./train: log, env.log, loss_0.log, save_ckpt/ckpt_0/*.ckpt.
# Extra --key=value arguments go to train.py (e.g. --epoch_size=2, --resume=PATH).
# FOREGROUND=1 waits and returns train.py's exit status (default: background, as the original).
USAGE="Usage: bash run_standalone_train_cpu.sh [PRETRAINED_MODEL|none] [COCO_ROOT] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 2 3
check_pretrained "${ARGS[0]}"
check_data "${ARGS[1]}" "${ARGS[2]}"

export DEVICE_NUM=1 DEVICE_ID=0 RANK_ID=0 RANK_SIZE=1
mkdir -p train && cd train || exit 1
env > env.log
echo "start training on the CPU in $PWD"
run_logged log "$PYTHON" "$ROOT/train.py" --config_path="$ROOT/default_config_cpu.yaml" --device_target=CPU \
    --coco_root="$COCO_ROOT" --mindrecord_dir="$MINDRECORD_DIR" --pre_trained="$PRETRAINED" "${OPTIONS[@]}"
