"""convtool: image filtering, convolution arithmetic, small CNNs and ONNX inference.

The public Python API is imported lazily so that ``import convtool`` stays cheap::

    from convtool.conv import correlate2d, convolve2d, pool2d
    from convtool.kernels import load_kernel
    from convtool import shapes
"""

__version__ = "0.1.0"
