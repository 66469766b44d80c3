"""`convtool segment` on a folder of photos against a plain single-threaded script (plain_segment_photos.py).

--count 640x480 JPEG photos (benchmarks/photos.py), a 224x224 RGB segmenter whose scores come out at a
quarter of its input (tests/infer_helpers.colour_segmenter), batch 8: both write a mask and an overlay PNG
per photo. Prints both rates, their ratio (process wall, medians of --repeat alternating runs) and
convtool's decode/infer/post split.

    uv run --extra dev --extra bench python benchmarks/segment_vs_script.py [--count 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from infer_helpers import colour_segmenter  # noqa: E402
from photos import write_photos  # noqa: E402
from timing import wall  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "convtool")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        write_photos(photos, args.count)
        model = colour_segmenter(tmp / "seg.onnx", stride=4, size=(224, 224))
        plain_out, our_out = tmp / "plain", tmp / "ours"
        plain_out.mkdir()
        script = [sys.executable, str(ROOT / "benchmarks" / "plain_segment_photos.py"), str(photos), str(model),
                  str(plain_out)]
        ours = [str(Path(sys.executable).with_name("convtool")), "segment", str(photos), "-m", str(model), "-o",
                str(our_out), "--overwrite", "--batch", "8", "--device", "cpu", "-v"]
        wall(script), wall(ours)
        plain_t, our_t, log = [], [], ""
        for _ in range(args.repeat):
            plain_t.append(wall(script)[0])
            elapsed, log = wall(ours)
            our_t.append(elapsed)
        p, o = statistics.median(plain_t), statistics.median(our_t)
        print(f"{args.count} photos 640x480 JPEG, 224x224 segmenter (stride 4), mask + overlay PNG each:")
        print(f"  plain script {args.count / p:,.1f} img/s, convtool {args.count / o:,.1f} img/s (process wall, "
              f"medians of {args.repeat}): ratio {p / o:.2f}")
        print("  " + next((x for x in log.splitlines() if " images in " in x), ""))
        sizes = [sum(f.stat().st_size for f in folder.glob(f"*_{kind}.png")) / args.count / 1e3
                 for folder in (plain_out, our_out) for kind in ("mask", "overlay")]
        print(f"  PNG kB per photo: plain mask {sizes[0]:.1f}, overlay {sizes[1]:.0f}; convtool mask {sizes[2]:.1f}, "
              f"overlay {sizes[3]:.0f} (with outlines and a legend)")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
