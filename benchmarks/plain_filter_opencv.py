"""The anchor for `convtool filter`: the plain OpenCV script a user would write instead, one thread of Python.

Reads each image with cv2.imread, filters it (two filter2D and a magnitude for Sobel; filter2D for the
5x5 Gaussian and the 9x9 blob; GaussianBlur for a large Gaussian), scales to 8 bits and writes a PNG with
cv2.imwrite's defaults. Usage: python plain_filter_opencv.py INPUT(folder or file) OUT_FOLDER KERNEL
KERNEL: sobel | gaussian5 | blob | gaussian-sigma3
"""

import os
import sys

import cv2
import numpy as np

source, out, kernel = sys.argv[1:4]
files = sorted(os.path.join(source, n) for n in os.listdir(source)) if os.path.isdir(source) else [source]
os.makedirs(out, exist_ok=True)
sobel_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
g5 = cv2.getGaussianKernel(5, 1.0)
blob = np.array([
    [0, 0, 3, 2, 2, 2, 3, 0, 0], [0, 2, 3, 5, 5, 5, 3, 2, 0], [3, 3, 5, 3, 0, 3, 5, 3, 3],
    [2, 5, 3, -12, -23, -12, 3, 5, 2], [2, 5, 0, -23, -40, -23, 0, 5, 2], [2, 5, 3, -12, -23, -12, 3, 5, 2],
    [3, 3, 5, 3, 0, 3, 5, 3, 3], [0, 2, 3, 5, 5, 5, 3, 2, 0], [0, 0, 3, 2, 2, 2, 3, 0, 0]], np.float32)
for path in files:
    image = cv2.imread(path)
    if kernel == "sobel":
        gx = cv2.filter2D(image, cv2.CV_32F, sobel_x)
        gy = cv2.filter2D(image, cv2.CV_32F, sobel_x.T)
        result = cv2.normalize(cv2.magnitude(gx, gy), None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    elif kernel == "gaussian5":
        result = cv2.filter2D(image, -1, (g5 @ g5.T).astype(np.float32))
    elif kernel == "blob":
        result = cv2.normalize(cv2.filter2D(image, cv2.CV_32F, blob), None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    else:
        result = cv2.GaussianBlur(image, (19, 19), 3)
    cv2.imwrite(os.path.join(out, os.path.splitext(os.path.basename(path))[0] + ".png"), result)
