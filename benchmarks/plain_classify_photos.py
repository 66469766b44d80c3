"""The anchor for photo classification: a plain single-threaded script, as a user would write it.

Lists a folder, opens each JPEG with Pillow, converts to RGB, resizes (BILINEAR) to the model's input,
runs onnxruntime at batch 64 on NCHW float32 pixels / 255, writes a CSV of the top class.
Usage: python plain_classify_photos.py FOLDER MODEL.onnx OUT.csv
"""

import csv
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

folder, model, out = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
_, _, height, width = session.get_inputs()[0].shape
files = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".jpg"))
rows = []
for start in range(0, len(files), 64):
    batch = np.stack([np.asarray(Image.open(f).convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
                      for f in files[start : start + 64]])
    scores = session.run(None, {name: batch.transpose(0, 3, 1, 2).astype(np.float32) / 255})[0]
    rows += [(f, int(s.argmax()), float(s.max())) for f, s in zip(files[start : start + 64], scores)]
with open(out, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["file", "label", "score"])
    writer.writerows(rows)
