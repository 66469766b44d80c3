"""The anchor for segmenting photos: a plain single-threaded script, as a user would write it.

Opens each JPEG with Pillow, resizes it (BILINEAR) to the model's input, runs onnxruntime at batch 8 on
NCHW float32 pixels / 255, resizes every class's score map to the photo's size with Pillow, takes the
argmax, and saves the mask as a palette PNG and an overlay (the photo with the classes blended in at 0.5)
as an RGB PNG, both with Pillow's defaults.
Usage: python plain_segment_photos.py FOLDER MODEL.onnx OUT_DIR
"""

import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

folder, model, out = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
_, _, height, width = session.get_inputs()[0].shape
colours = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
files = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".jpg"))
for start in range(0, len(files), 8):
    images = [Image.open(f).convert("RGB") for f in files[start : start + 8]]
    batch = np.stack([np.asarray(im.resize((width, height), Image.Resampling.BILINEAR)) for im in images])
    scores = session.run(None, {name: batch.transpose(0, 3, 1, 2).astype(np.float32) / 255})[0]
    for file, image, score in zip(files[start : start + 8], images, scores):
        maps = [np.asarray(Image.fromarray(s, mode="F").resize(image.size, Image.Resampling.BILINEAR)) for s in score]
        mask = np.stack(maps).argmax(axis=0).astype(np.uint8)
        stem = os.path.join(out, os.path.splitext(os.path.basename(file))[0])
        png = Image.fromarray(mask, mode="P")
        png.putpalette(colours.ravel().tolist())
        png.save(stem + "_mask.png")
        rgb = np.asarray(image, dtype=np.float32)
        blended = np.where(mask[..., None] > 0, rgb * 0.5 + colours[mask] * 0.5, rgb)
        Image.fromarray(np.rint(blended).astype(np.uint8)).save(stem + "_overlay.png")
