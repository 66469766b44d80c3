"""Object detection with ONNX detectors: output decoders, letterbox, NMS, drawing and mAP.

- ``boxes``: box conversions, IoU, class-wise NMS (vectorised, with its naive loop beside it)
- ``letterbox``: aspect-keeping resize with padding (or plain resize) and its exact inverse for boxes
- ``decoders``: YOLOv8/v11, YOLOv5, YOLOX, SSD and NMS-included output layouts, chosen from the model
- ``detector``: runs a model over files on the shared inference pipeline, one ``Detections`` per image
- ``metrics``: YOLO-format labels, precision, recall, mAP@0.5 and mAP@0.5:0.95 (COCO 101-point)
- ``draw``: boxes with label and score on the original image
"""
