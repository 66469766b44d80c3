"""Small CNNs with hand-written forward and backward passes, trained on convtool's im2col core.

Modules: ``layers`` (forward/backward pairs), ``losses``, ``optim`` (optimisers and schedules),
``models`` (networks as graphs, LeNet-5, a small ResNet, a small U-Net), ``data`` (IDX files,
class folders, the bundled MNIST, synthetic segmentation canvases), ``train`` (the loop),
``export`` (ONNX with metadata, and loading weights back), ``plots`` (curves and confusion matrix
as PNG with Pillow). Nothing here imports click or rich.
"""
