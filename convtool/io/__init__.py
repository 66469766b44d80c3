"""The only place that touches files: discover inputs, open images with every guard, publish outputs.

    discover.py   files and folders -> image files (one rule: hidden skipped, non-images counted, loops cut)
    read.py       open an image with every guard (bomb, EXIF, 16-bit, palette, alpha, frames) -> arrays
    publish.py    write a temporary beside the output, then link it into place without replacing
    cleanup.py    temporaries registered and removed on SIGINT, SIGTERM and SIGHUP
    save.py       arrays -> PNG/TIFF/NPY/JPEG/BMP/WebP through publish
    onnx_file.py  the one ONNX loading function

Nothing is imported here, so a worker process can import ``convtool.io.publish`` alone (no Pillow).
"""
