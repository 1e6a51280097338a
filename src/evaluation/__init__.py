"""Evaluation: eval.py's loop over the validation set and its files (evaluator.py; the COCO figures themselves are
src/util.py, the original's) and drawing detections on images (visualize.py)."""
