"""`convtool filter` against the plain OpenCV script a user would write instead (issue 18), one run.

Workloads (photos made from samples/ by benchmarks/photos.py):
1. 200 photos of 640x480 (JPEG), PNG out, for Sobel magnitude, a 5x5 Gaussian and the 9x9 blob:
   process wall time of convtool / of benchmarks/plain_filter_opencv.py (target <= 0.6) and the total
   PNG size of convtool's outputs / OpenCV's (target within 10%).
2. One 4000x3000 JPEG, Gaussian sigma 3, PNG out: warm JIT cache convtool / OpenCV (target <= 2.0),
   and the first run (empty Numba cache) minus the warm one (target <= 2 s).
3. One 512x512 image, Sobel: whole process, cold (empty Numba cache) and warm (target <= 0.5 s).
On an empty cache `convtool filter` runs NumPy rather than compiling for seconds (the summary line says which
back-end ran), so the benchmark then warms the cache as a user would, with `convtool filter --warm` (timed).
Also convtool's own split per image (decode / filter / encode) from its summary line.

Usage: python benchmarks/filter_vs_opencv.py [--count 200] [--repeat 3] [--only photos,big,small]
The machine is shared and noisy: the ratios are measured in one run; `uptime` is printed with them.
convtool's own modules are byte-compiled first, as an install does (an editable checkout run with
PYTHONDONTWRITEBYTECODE=1 would otherwise recompile them in every process: about 0.2-0.4 s).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from photos import write_photos  # noqa: E402
from timing import wall  # noqa: E402

CONVTOOL = str(Path(sys.executable).with_name("convtool"))
PHOTO_KERNELS = (("sobel", "sobel"), ("gaussian:size=5", "gaussian5"), ("blob", "blob"))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".png")


def summary_line(log: str) -> str:
    """convtool's 'Filtered N of M image(s) ...' line (the split per image and the back-ends that ran)."""
    return next((line for line in log.splitlines() if line.startswith("Filtered")), log.strip()[-200:])


def compare(label: str, ours: list[str], plain: list[str], repeat: int, out_ours: Path, out_plain: Path,
            env: dict) -> tuple[float, float, str]:
    wall(plain, env), wall(ours, env)  # page cache, bytecode, JIT cache
    ours_t, plain_t, log = [], [], ""
    for _ in range(repeat):
        plain_t.append(wall(plain, env)[0])
        elapsed, log = wall(ours, env)
        ours_t.append(elapsed)
    o, p = statistics.median(ours_t), statistics.median(plain_t)
    sizes = folder_bytes(out_ours) / max(folder_bytes(out_plain), 1)
    split = summary_line(log)
    print(f"  {label}: convtool {o:.2f} s, OpenCV script {p:.2f} s (medians of {repeat}): ratio {o / p:.2f}; "
          f"PNG bytes convtool/OpenCV {sizes:.3f}")
    print(f"    {split}")
    return o, p, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="photos,big,small", help="workloads to run (comma-separated)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    compileall.compile_dir(str(HERE.parent / "convtool"), quiet=1)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp / "numba-cache"))  # empty: as after an install
        big = big_first_run(tmp, env) if "big" in only else None
        # A run on a cold cache stays in NumPy, so the cache is warmed as the user would: once, by --warm.
        warming, _ = wall([CONVTOOL, "filter", "--warm"], env)
        print(f"`convtool filter --warm` on an empty Numba cache: {warming:.1f} s")
        photos = tmp / "photos"
        if "photos" in only:
            write_photos(photos, args.count)
            print(f"{args.count} photos 640x480 JPEG -> PNG (target: ratio <= 0.6, PNG bytes within 10%):")
        for spec, name in PHOTO_KERNELS if "photos" in only else ():
            ours, plain = tmp / f"ours-{name}", tmp / f"plain-{name}"
            compare(name, [CONVTOOL, "filter", str(photos), "-k", spec, "-o", str(ours), "--overwrite"],
                    [sys.executable, str(HERE / "plain_filter_opencv.py"), str(photos), str(plain), name],
                    args.repeat, ours, plain, env)
        if big is not None:
            big_image(tmp, args.repeat, env, *big)
        if "small" in only:
            small_image(tmp, args.repeat, env)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


def big_first_run(tmp: Path, env: dict) -> tuple[float, str]:
    """The 4000x3000 Gaussian's first run on the still empty Numba cache: (seconds, convtool's summary line)."""
    big = write_photos(tmp / "big", 1, size=(4000, 3000))[0]
    first, log = wall(big_command(big, tmp), env)
    return first, summary_line(log)


def big_command(big: Path, tmp: Path) -> list[str]:
    return [CONVTOOL, "filter", str(big), "-k", "gaussian:sigma=3", "-o", str(tmp / "big-ours" / "g.png"), "--overwrite"]


def big_image(tmp: Path, repeat: int, env: dict, first: float, first_line: str) -> None:
    plain_cmd = [sys.executable, str(HERE / "plain_filter_opencv.py"), str(tmp / "big" / "photo00000.jpg"),
                 str(tmp / "big-plain"), "gaussian-sigma3"]
    print("one 4000x3000 JPEG, Gaussian sigma 3 -> PNG (target: warm ratio <= 2.0, first run <= warm + 2 s):")
    warm, _, _ = compare("gaussian-sigma3", big_command(tmp / "big" / "photo00000.jpg", tmp), plain_cmd, repeat,
                         tmp / "big-ours", tmp / "big-plain", env)
    print(f"  first run (empty Numba cache, before --warm) {first:.2f} s: {first - warm:+.2f} s over warm")
    print(f"    {first_line}")


def small_image(tmp: Path, repeat: int, env: dict) -> None:
    small = tmp / "astronaut.png"
    small.write_bytes((HERE.parent / "samples" / "astronaut.png").read_bytes())
    small_cmd = [CONVTOOL, "filter", str(small), "-k", "sobel", "-o", str(tmp / "small.png"), "--overwrite"]
    cold = wall(small_cmd, dict(os.environ, NUMBA_CACHE_DIR=str(tmp / "small-cache")))[0]
    warm_small = statistics.median(wall(small_cmd, env)[0] for _ in range(repeat))
    print(f"one 512x512 image, Sobel, whole process (target <= 0.5 s): cold {cold:.2f} s, warm {warm_small:.2f} s")


if __name__ == "__main__":
    main()
