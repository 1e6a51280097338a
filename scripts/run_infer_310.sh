#!/bin/bash
# Inference of an exported MINDIR (or ONNX file) on a folder of images, then COCO evaluation of the results.
#   Ascend (default): builds and runs the C++ app ascend310_infer/ (needs the Ascend toolkit and MindSpore Ascend;
#                     the MINDIR must be exported with --batch_size=1).
#   CPU / GPU:        runs the same MINDIR through MindSpore's Python runtime, or export.py's ONNX file (*.onnx)
#                     through onnxruntime on the CPU (src/deploy/mindir_app.py).
# Outputs in the current folder: result_Files/<image>_{0,1,2}.bin, time_Result/test_perform_static.txt,
# build.log (Ascend), infer.log, acc.log (the COCO summary). Extra --key=value arguments go to postprogress.py
# (e.g. --config_path=... for another class list, --dataset=txt for a TXT label file).
USAGE="Usage: bash run_infer_310.sh [MINDIR_PATH] [DATA_PATH] [ANNO_PATH] [DEVICE_ID](option, 0) [DEVICE_TARGET](option, Ascend|GPU|CPU, default Ascend) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 3 5
MODEL=$(get_real_path "${ARGS[0]}")
DATA_PATH=$(get_real_path "${ARGS[1]}")
ANNO_PATH=$(get_real_path "${ARGS[2]}")
DEVICE_ID=${ARGS[3]:-0}
DEVICE_TARGET=${ARGS[4]:-Ascend}
[ -f "$MODEL" ] || die "MINDIR_PATH=$MODEL is not a file"
[ -d "$DATA_PATH" ] || die "DATA_PATH=$DATA_PATH is not a directory"
[ -f "$ANNO_PATH" ] || die "ANNO_PATH=$ANNO_PATH is not a file"
check_device_id "$DEVICE_ID"
if [[ "$MODEL" == *.onnx && "$DEVICE_TARGET" == "Ascend" ]]; then
    die "MINDIR_PATH=$MODEL is an ONNX file: the Ascend app runs MINDIRs; run it with DEVICE_TARGET=CPU (onnxruntime)"
fi
case "$DEVICE_TARGET" in
    Ascend|GPU|CPU) ;;
    *) die "DEVICE_TARGET=$DEVICE_TARGET must be Ascend, GPU or CPU" ;;
esac

echo "mindir name: $MODEL"
echo "dataset path: $DATA_PATH"
echo "anno_path: $ANNO_PATH"
echo "device id: $DEVICE_ID"
echo "device target: $DEVICE_TARGET"

if [ "$DEVICE_TARGET" == "Ascend" ]; then
    ascend_home=${ASCEND_HOME_PATH:-/usr/local/Ascend}
    if [ ! -d "$ascend_home" ]; then
        die "no Ascend toolkit: ASCEND_HOME_PATH is not set and $ascend_home does not exist (on a machine without Ascend use DEVICE_TARGET=CPU)"
    fi
else
    check_device "$DEVICE_TARGET"
fi

rm -rf result_Files time_Result
mkdir result_Files time_Result

if [ "$DEVICE_TARGET" == "Ascend" ]; then
    echo "building the inference app (build.log)"
    if ! PYTHON="$PYTHON" bash "$ROOT/ascend310_infer/build.sh" &> build.log; then
        echo "compile app code failed: see $PWD/build.log" >&2
        tail -n 5 build.log >&2
        exit 1
    fi
    echo "running inference (infer.log)"
    "$ROOT/ascend310_infer/out/main" --mindir_path="$MODEL" --dataset_path="$DATA_PATH" --device_id="$DEVICE_ID" \
        --result_path=./result_Files --time_path=./time_Result &> infer.log
else
    echo "running inference with MindSpore's Python runtime on $DEVICE_TARGET (infer.log)"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m src.tools.mindir_infer --mindir_path="$MODEL" \
        --dataset_path="$DATA_PATH" --device_target="$DEVICE_TARGET" --device_id="$DEVICE_ID" \
        --result_path=./result_Files --time_path=./time_Result &> infer.log
fi
status=$?
if [ $status -ne 0 ]; then
    echo "execute inference failed: see $PWD/infer.log" >&2
    tail -n 5 infer.log >&2
    exit $status
fi

echo "computing accuracy (acc.log)"
"$PYTHON" "$ROOT/postprogress.py" --anno_path="$ANNO_PATH" --result_path=./result_Files "${OPTIONS[@]}" &> acc.log
status=$?
if [ $status -ne 0 ]; then
    echo "calculate accuracy failed: see $PWD/acc.log" >&2
    tail -n 5 acc.log >&2
    exit $status
fi
grep -m1 "Average Precision" acc.log
