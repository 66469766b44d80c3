"""``convtool bench``: convtool's convolution back-ends against OpenCV and scipy.ndimage, in one run.

The measuring lives in :mod:`convtool.conv.benchmark`; this module parses options and prints the
table (or ``--json``).
"""

from __future__ import annotations

import click

from convtool.errors import UsageError


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(results: dict) -> list[str]:
    """Plain-text tables: every timing per case in Mpix/s, then convtool auto's ratios to the best anchors."""
    lines = [f"convtool bench: {results['threads']} thread(s), float32 output, medians of interleaved runs; "
             f"Mpix/s counts samples (H x W x channels)"]
    for section, title in (("cases", "Correlation"), ("pooling", "Pooling")):
        lines += ["", f"{title}:", f"  {'case':<34} {'library / back-end':<30} {'Mpix/s':>8}  runs"]
        for case in results[section]:
            for k, timing in enumerate(case["timings"]):
                label = case["case"] if k == 0 else ""
                note = f"  ({timing['note']})" if timing["note"] else ""
                lines.append(f"  {label:<34} {timing['name']:<30} {timing['mpix_s']:>8,.0f}  {timing['runs']}{note}")
            for note in case.get("notes", []):
                lines.append(f"  {'':<34} note: {note}")
    lines += ["", "convtool auto / best anchor (>= 1.0 means convtool is faster):",
              f"  {'case':<34} {'auto ran':<10} {'vs OpenCV':>9} {'vs scipy':>9} {'vs numpy':>9} {'max rel diff':>13}"]
    for case in results["cases"] + results["pooling"]:
        diff = case.get("max_rel_diff_vs_opencv")
        lines.append(f"  {case['case']:<34} {case['chosen']:<10} {_fmt(case['ratio_to_best_opencv'], 2):>9} "
                     f"{_fmt(case['ratio_to_best_scipy'], 2):>9} {_fmt(case.get('ratio_to_numpy'), 2):>9} "
                     f"{'-' if diff is None else f'{diff:.1e}':>13}")
    if "jit_seconds" in results:
        lines += ["", "First call in a fresh process (512x512 float32; Sobel, Gaussian 5x5, blob 9x9):"]
        lines += [f"  {name:<45} {seconds:6.2f} s" for name, seconds in results["jit_seconds"].items()]
    if results["skipped"]:
        lines += ["", "Skipped:"] + [f"  {note}" for note in results["skipped"]]
    return lines


@click.command(short_help="Time convtool's convolution back-ends against OpenCV and scipy.")
@click.option("--quick", is_flag=True, help="Small images, few repeats, no JIT processes: a smoke run of a few seconds.")
@click.option("--threads", type=int, default=2, show_default=True, help="Threads for every library.")
@click.option("--repeat", type=int, default=5, show_default=True, help="Timed runs per call (median) after a warm-up.")
@click.option("--auto-only", is_flag=True, help="Time only convtool's auto choice, not every back-end.")
@click.option("--no-jit", is_flag=True, help="Skip the cold/warm JIT timings in fresh processes.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def command(quick: bool, threads: int, repeat: int, auto_only: bool, no_jit: bool, as_json: bool) -> None:
    """Time correlate2d (auto and each back-end) against cv2.filter2D, cv2.sepFilter2D and
    scipy.ndimage on a 4096x4096 float32 image, a 1920x1080 RGB uint8 image and a batch of 28x28
    images, with Sobel 3x3, Gaussian 5x5 (sigma 1), the 9x9 blob and Gaussian 31x31 (sigma 5).

    \b
    Examples:
      convtool bench --quick
      convtool bench --threads 2 --json > bench.json
    """
    if threads < 1 or repeat < 1:
        raise UsageError(f"--threads and --repeat must be at least 1, got {threads} and {repeat}")
    from convtool.conv import benchmark

    results = benchmark.run(quick=quick, threads=threads, repeat=2 if quick else repeat,
                            budget=0.2 if quick else 3.0, backends=not auto_only, jit=not no_jit)
    click.echo(benchmark.dumps(results) if as_json else "\n".join(render(results)))
