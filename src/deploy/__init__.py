"""Deployment: the exported model's facts (model_facts.py), the ONNX file (onnx_export.py) and running it with
onnxruntime (onnx_infer.py), an exported MINDIR or ONNX file as one detector (exported.py), and the C++ app's
counterpart over a folder of images (mindir_app.py)."""
