"""Data: reading COCO / TXT annotations (sources), image files, the per-image preprocessing (transforms), the
MindRecord conversion and the synthetic data set. The pipelines built from them are src/dataset.py (the original's)."""
