#!/bin/bash
# Train on one GPU. Outputs in ./train: log, env.log, loss_0.log, save_ckpt/ckpt_0/*.ckpt.
# Extra --key=value arguments go to train.py. FOREGROUND=1 waits (default: background, as the original).
USAGE="Usage: bash run_standalone_train_gpu.sh [PRETRAINED_MODEL|none] [COCO_ROOT] [DEVICE_ID] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 3 4
check_pretrained "${ARGS[0]}"
check_device_id "${ARGS[2]}"
check_data "${ARGS[1]}" "${ARGS[3]}"
check_device GPU

export DEVICE_NUM=1 DEVICE_ID=${ARGS[2]} RANK_ID=0 RANK_SIZE=1
mkdir -p train && cd train || exit 1
env > env.log
echo "start training on GPU $DEVICE_ID in $PWD"
run_logged log "$PYTHON" "$ROOT/train.py" --config_path="$ROOT/default_config_gpu.yaml" --device_target=GPU \
    --coco_root="$COCO_ROOT" --mindrecord_dir="$MINDRECORD_DIR" --device_id="$DEVICE_ID" \
    --pre_trained="$PRETRAINED" "${OPTIONS[@]}"
