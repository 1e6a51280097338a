# Fresh machine: `make demo` (the main job on the embedded synthetic data) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per requirements file, made by one rule: `setup` (the demo) installs requirements.txt only,
# `setup-dev` (tests, lint) requirements-dev.txt, which includes requirements.txt.
STAMP := $(VENV)/.installed-requirements.txt
DEV_STAMP := $(VENV)/.installed-requirements-dev.txt

.PHONY: setup setup-dev test test-fast demo lint clean bench-torchvision-venv bench-vs-torchvision

setup: $(STAMP)

setup-dev: $(DEV_STAMP)

$(DEV_STAMP): requirements.txt

$(VENV)/.installed-%: %
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $<
	touch $@

test: setup-dev
	$(PY) -m pytest -q tests

# The unit tests only (about a minute): no end-to-end runs, subprocesses or full-network compilations.
test-fast: setup-dev
	$(PY) -m pytest -q -m "not slow" tests

lint: setup-dev
	$(VENV)/bin/ruff check .

# The torchvision reference of bench/bench_vs_torchvision.py in its own venv (torch 2.14.1 + torchvision 0.29.1,
# ~5.5 GB; the project's venv keeps its torch 2.13.0), then the same-run comparison (default: 768x1280 and 256x384).
TV_VENV := .venv-torchvision
TV_STAMP := $(TV_VENV)/.installed
BENCH_ARGS ?=

bench-torchvision-venv: $(TV_STAMP)

$(TV_STAMP): bench/requirements-torchvision.txt
	test -x $(TV_VENV)/bin/python || $(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/python -m pip install --quiet -r bench/requirements-torchvision.txt
	touch $(TV_STAMP)

bench-vs-torchvision: setup bench-torchvision-venv
	GLOG_v=3 $(PY) bench/bench_vs_torchvision.py $(BENCH_ARGS)

# The demo: a synthetic data set (COCO layout, 6 COCO classes), training from scratch on the CPU with
# demo_config.yaml (the same network at 256x384, fewer RoIs, 300 steps), then COCO evaluation of the last
# checkpoint on the synthetic val split, export to MINDIR and inference of the MINDIR with COCO evaluation
# (postprogress.py), the same for the ONNX export in onnxruntime; then the loss curve (src/tools/plot_log.py) and the
# detections of a few val images drawn by infer.py from the ONNX file (onnxruntime: no third compilation).
# Outputs in $(DEMO_DIR)/: data/, train/ (log, loss_0.log, save_ckpt/, loss_curve.png), eval/ (mAP.log,
# per_class.csv), infer/ (*.mindir, *.onnx, acc.log), infer_onnx/ (acc.log), detections/ (detections.json, one PNG per image, log).
DEMO_DIR ?= demo_out
DEMO_INFER_IMAGES ?= 6
DEMO_TRAIN_IMAGES ?= 200
DEMO_VAL_IMAGES ?= 50
DEMO_SEED ?= 0
DEMO_ARGS ?=
DEMO_ROOT := $(abspath $(DEMO_DIR))
DEMO_RUN := GLOG_v=3 $(abspath $(PY))

demo: SHELL := /bin/bash
demo: .SHELLFLAGS := -o pipefail -c
demo: setup
	test -f $(DEMO_ROOT)/data/annotations/instances_val2017.json || \
		$(PY) -m src.tools.synthetic_data --out $(DEMO_ROOT)/data --num_train $(DEMO_TRAIN_IMAGES) \
			--num_val $(DEMO_VAL_IMAGES) --seed $(DEMO_SEED)
	rm -rf $(DEMO_ROOT)/train $(DEMO_ROOT)/eval
	mkdir -p $(DEMO_ROOT)/train $(DEMO_ROOT)/eval $(DEMO_ROOT)/data/mindrecord
	cd $(DEMO_ROOT)/train && $(DEMO_RUN) $(CURDIR)/train.py --config_path=$(CURDIR)/demo_config.yaml \
		--coco_root=$(DEMO_ROOT)/data --mindrecord_dir=$(DEMO_ROOT)/data/mindrecord --pre_trained=none \
		$(DEMO_ARGS) 2>&1 | tee log
	cd $(DEMO_ROOT)/eval && $(DEMO_RUN) $(CURDIR)/eval.py --config_path=$(CURDIR)/demo_config.yaml \
		--coco_root=$(DEMO_ROOT)/data --mindrecord_dir=$(DEMO_ROOT)/data/mindrecord \
		--checkpoint_path=$$(ls -t $(DEMO_ROOT)/train/save_ckpt/ckpt_0/faster_rcnn-*.ckpt | head -1) \
		2>&1 | tee log
	rm -rf $(DEMO_ROOT)/infer && mkdir -p $(DEMO_ROOT)/infer
	cd $(DEMO_ROOT)/infer && $(DEMO_RUN) $(CURDIR)/export.py --config_path=$(CURDIR)/demo_config.yaml \
		--ckpt_file=$$(ls -t $(DEMO_ROOT)/train/save_ckpt/ckpt_0/faster_rcnn-*.ckpt | head -1) \
		--file_format=MINDIR --batch_size=1 --file_name=$(DEMO_ROOT)/infer/faster_rcnn_dcn 2>&1 | tee export.log
	cd $(DEMO_ROOT)/infer && PYTHON=$(abspath $(PY)) GLOG_v=3 bash $(CURDIR)/scripts/run_infer_310.sh \
		$(DEMO_ROOT)/infer/faster_rcnn_dcn.mindir $(DEMO_ROOT)/data/val2017 \
		$(DEMO_ROOT)/data/annotations/instances_val2017.json 0 CPU --config_path=$(CURDIR)/demo_config.yaml
	cd $(DEMO_ROOT)/infer && $(DEMO_RUN) $(CURDIR)/export.py --config_path=$(CURDIR)/demo_config.yaml \
		--ckpt_file=$$(ls -t $(DEMO_ROOT)/train/save_ckpt/ckpt_0/faster_rcnn-*.ckpt | head -1) \
		--file_format=ONNX --batch_size=1 --file_name=$(DEMO_ROOT)/infer/faster_rcnn_dcn 2>&1 | tee -a export.log
	rm -rf $(DEMO_ROOT)/infer_onnx && mkdir -p $(DEMO_ROOT)/infer_onnx
	cd $(DEMO_ROOT)/infer_onnx && PYTHON=$(abspath $(PY)) GLOG_v=3 bash $(CURDIR)/scripts/run_infer_310.sh \
		$(DEMO_ROOT)/infer/faster_rcnn_dcn.onnx $(DEMO_ROOT)/data/val2017 \
		$(DEMO_ROOT)/data/annotations/instances_val2017.json 0 CPU --config_path=$(CURDIR)/demo_config.yaml
	$(DEMO_RUN) -m src.tools.plot_log $(DEMO_ROOT)/train/log --out $(DEMO_ROOT)/train/loss_curve.png
	rm -rf $(DEMO_ROOT)/detections && mkdir -p $(DEMO_ROOT)/detections
	$(DEMO_RUN) $(CURDIR)/infer.py --config_path=$(CURDIR)/demo_config.yaml --onnx=$(DEMO_ROOT)/infer/faster_rcnn_dcn.onnx \
		--images=$$(ls -d $(DEMO_ROOT)/data/val2017/* | head -n $(DEMO_INFER_IMAGES) | paste -sd, -) \
		--draw=True --detections_dir=$(DEMO_ROOT)/detections 2>&1 | tee $(DEMO_ROOT)/detections/log
	@echo "demo: loss curve in $(DEMO_ROOT)/train/loss_curve.png; the detections of $(DEMO_INFER_IMAGES) val images \
		drawn by infer.py in $(DEMO_ROOT)/detections/ (detections.json, one PNG per image)"
	@echo "demo: $$(grep -h '^Training done' $(DEMO_ROOT)/train/log)"
	@echo "demo: AP50 on the synthetic val split: eval.py $$(grep -i 'IoU=0.50 ' $(DEMO_ROOT)/eval/log | head -1 | sed 's/.*= *//'), exported MINDIR $$(grep -i 'IoU=0.50 ' $(DEMO_ROOT)/infer/acc.log | head -1 | sed 's/.*= *//'), ONNX in onnxruntime $$(grep -i 'IoU=0.50 ' $(DEMO_ROOT)/infer_onnx/acc.log | head -1 | sed 's/.*= *//')"

clean:
	rm -rf $(VENV) .pytest_cache
