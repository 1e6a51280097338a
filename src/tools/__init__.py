"""Command-line tools, each `python -m src.tools.<name>`: plot_log (training curves), convert_backbone (torchvision
ResNet-50 -> model-zoo names), synthetic_data (the demo data set), mindir_infer (an exported model over a folder, as
the C++ app), check_device (the launchers' device check)."""
