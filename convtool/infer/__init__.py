"""Running ONNX models: sessions and devices, preprocessing, classification, segmentation, features."""
