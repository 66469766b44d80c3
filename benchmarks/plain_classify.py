"""The anchor: a plain single-threaded classification script, as a user would write it.

Lists a folder, decodes each PNG with Pillow one after another, runs the model with onnxruntime on the
CPU at batch 256 (or one image at a time for a fixed-batch model), writes a CSV of the top class.
Usage: python plain_classify.py FOLDER MODEL.onnx OUT.csv
"""

import csv
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

folder, model, out = sys.argv[1:4]
files = sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".png"))
images = np.stack([np.asarray(Image.open(f), dtype=np.float32) for f in files])[:, None] / 255.0

session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
batch = session.get_inputs()[0].shape[0]
batch = batch if isinstance(batch, int) else 256
scores = np.concatenate([session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)])

with open(out, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["file", "label", "score"])
    for file, row in zip(files, scores):
        writer.writerow([file, int(row.argmax()), float(row.max())])
