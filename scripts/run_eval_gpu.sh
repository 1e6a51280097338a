#!/bin/bash
# COCO evaluation of a checkpoint on GPU DEVICE_ID. Outputs in ./eval: log, env.log, mAP.log,
# results.pkl.bbox.json. Extra --key=value arguments go to eval.py.
# FOREGROUND=1 waits and returns eval.py's exit status (default: background, as the original).
USAGE="Usage: bash run_eval_gpu.sh [VALIDATION_JSON_FILE] [CHECKPOINT_PATH] [COCO_ROOT] [DEVICE_ID] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 4 5
ANNO_PATH=$(get_real_path "${ARGS[0]}")
CHECKPOINT_PATH=$(get_real_path "${ARGS[1]}")
[ -f "$ANNO_PATH" ] || die "VALIDATION_JSON_FILE=$ANNO_PATH is not a file"
[ -f "$CHECKPOINT_PATH" ] || die "CHECKPOINT_PATH=$CHECKPOINT_PATH is not a file"
check_device_id "${ARGS[3]}"
check_data "${ARGS[2]}" "${ARGS[4]}"
check_device GPU

export DEVICE_NUM=1 RANK_SIZE=1 DEVICE_ID=${ARGS[3]} RANK_ID=0
rm -rf eval && mkdir eval && cd eval || exit 1
env > env.log
echo "start eval on GPU device $DEVICE_ID in $PWD"
run_logged log "$PYTHON" "$ROOT/eval.py" --config_path="$ROOT/default_config_gpu.yaml" --device_id="$DEVICE_ID" \
    --anno_path="$ANNO_PATH" --checkpoint_path="$CHECKPOINT_PATH" --coco_root="$COCO_ROOT" \
    --mindrecord_dir="$MINDRECORD_DIR" "${OPTIONS[@]}"
