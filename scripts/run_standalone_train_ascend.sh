#!/bin/bash
# Train on one Ascend device (device 0). Outputs in ./train: log, env.log, loss_0.log, save_ckpt/ckpt_0/*.ckpt.
# Extra --key=value arguments go to train.py. FOREGROUND=1 waits (default: background, as the original).
USAGE="Usage: bash run_standalone_train_ascend.sh [PRETRAINED_MODEL|none] [COCO_ROOT] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 2 3
check_pretrained "${ARGS[0]}"
check_data "${ARGS[1]}" "${ARGS[2]}"

check_device Ascend
ulimit -u unlimited 2> /dev/null || true  # as the original, where the system allows it
export DEVICE_NUM=1 DEVICE_ID=0 RANK_ID=0 RANK_SIZE=1
mkdir -p train && cd train || exit 1
env > env.log
echo "start training on Ascend device $DEVICE_ID in $PWD"
run_logged log "$PYTHON" "$ROOT/train.py" --config_path="$ROOT/default_config.yaml" --device_target=Ascend \
    --coco_root="$COCO_ROOT" --mindrecord_dir="$MINDRECORD_DIR" --device_id="$DEVICE_ID" \
    --pre_trained="$PRETRAINED" "${OPTIONS[@]}"
