"""``convtool bench``: convtool's convolution back-ends against OpenCV and scipy.ndimage, in one run.

The measuring lives in :mod:`convtool.bench_harness`; this module parses options and prints the
tables (or ``--json``).
"""

from __future__ import annotations

import click

from convtool.errors import UsageError


def _fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def render(results: dict) -> list[str]:
    """Plain-text tables: every timing per case, convtool's ratios to the best anchors, small images."""
    lines = [f"convtool bench: {results['threads']} thread(s) for every library, reflect border, float32 output; "
             f"interleaved runs; Mpix/s counts samples (H x W x channels); median and best run; "
             f"% floor = median against a copy into a new array timed right after (out=: into an existing array, "
             f"in the same rounds)"]
    for section, title in (("cases", "Correlation"), ("pooling", "Pooling")):
        if not results[section]:
            continue
        lines += ["", f"{title}:", f"  {'case':<30} {'library / back-end':<36} {'median':>8} {'best':>8} "
                                   f"{'% floor':>7}  runs"]
        for case in results[section]:
            for k, timing in enumerate(case["timings"]):
                label = case["case"] if k == 0 else ""
                note = f"  ({timing['note']})" if timing["note"] else ""
                lines.append(f"  {label:<30} {timing['name']:<36} {timing['mpix_s']:>8,.0f} {timing['best_mpix_s']:>8,.0f} "
                             f"{_fmt(timing.get('floor_pct'), 0, '%'):>7}  {timing['runs']}{note}")
            for note in case.get("notes", []):
                lines.append(f"  {'':<30} note: {note}")
    lines += ["", "convtool auto / best anchor, medians (>= 1.0 means convtool is faster; paired: the median of "
                  "the ratios within each round):",
              f"  {'case':<30} {'auto ran':<10} {'vs OpenCV':>9} {'paired':>7} {'out= vs':>9} {'vs scipy':>9} "
              f"{'vs numpy':>9} {'max rel diff':>13}"]
    for case in results["cases"] + results["pooling"]:
        diff = case.get("max_rel_diff_vs_opencv")
        lines.append(f"  {case['case']:<30} {case['chosen']:<10} {_fmt(case['ratio_to_best_opencv'], 2):>9} "
                     f"{_fmt(case.get('paired_ratio_to_best_opencv'), 2):>7} "
                     f"{_fmt(case.get('out_ratio_to_best_opencv'), 2):>9} {_fmt(case['ratio_to_best_scipy'], 2):>9} "
                     f"{_fmt(case.get('ratio_to_numpy'), 2):>9} {'-' if diff is None else f'{diff:.1e}':>13}")
    lines += _small_lines(results.get("small", []))
    if "jit_seconds" in results:
        lines += ["", "First call in a fresh process (512x512 float32; Sobel, Gaussian 5x5, blob 9x9):"]
        lines += [f"  {name:<45} {seconds:6.2f} s" for name, seconds in results["jit_seconds"].items()]
    if results["skipped"]:
        lines += ["", "Skipped:"] + [f"  {note}" for note in results["skipped"]]
    return lines


def _small_lines(rows: list[dict]) -> list[str]:
    """Small images: microseconds per call (median / best) and auto's ratio to OpenCV's best median."""
    if not rows:
        return []
    names = list(rows[0]["median_us"])
    lines = ["", "Small images, Sobel 3x3 float32, one gray image per call, us per call (median / best of runs; "
                 "each run times a batch of calls):",
             "  " + f"{'size':>6} " + " ".join(f"{name:>21}" for name in names) + f" {'auto vs OpenCV':>15}"
             + f" {'runs x calls':>13}"]
    for row in rows:
        cells = " ".join(f"{row['median_us'][n]:>10,.1f} / {row['min_us'][n]:>8,.1f}" for n in names)
        batches = f"{row['runs']} x {row.get('calls_per_run', 1)}"
        lines.append(f"  {str(row['size']) + '^2':>6} {cells} {_fmt(row['ratio_to_opencv'], 2):>15} {batches:>13}")
    return lines


@click.command(short_help="Time convtool's convolution back-ends against OpenCV and scipy.")
@click.option("--quick", is_flag=True, help="Small images, few repeats, no JIT processes: a smoke run of a few seconds.")
@click.option("--threads", type=int, default=2, show_default=True, help="Threads for every library.")
@click.option("--repeat", type=int, default=21, show_default=True,
              help="Timed interleaved rounds per case (median and best) after a second of warm-up rounds.")
@click.option("--auto-only", is_flag=True, help="Time only convtool's auto choice, not every back-end.")
@click.option("--no-jit", is_flag=True, help="Skip the cold/warm JIT timings in fresh processes.")
@click.option("--no-small", is_flag=True, help="Skip the small-image section.")
@click.option("--case", "only", multiple=True, metavar="TEXT",
              help="Run only the cases whose name contains TEXT (repeatable; e.g. 'RGB u8, sobel3', pool, 'small 64').")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def command(quick: bool, threads: int, repeat: int, auto_only: bool, no_jit: bool, no_small: bool, only: tuple[str, ...],
            as_json: bool) -> None:
    """Time correlate2d (auto and each back-end) against cv2.filter2D, cv2.sepFilter2D and
    scipy.ndimage on a 4096x4096 float32 image, a 1920x1080 RGB uint8 image and a batch of 28x28
    images, with Sobel 3x3, Gaussian 5x5 (sigma 1), the 9x9 blob and Gaussian 31x31 (sigma 5),
    next to the memory floor (a copy into a new and into an existing array), then small images.

    \b
    Examples:
      convtool bench --quick
      convtool bench --threads 2 --json > bench.json
      convtool bench --auto-only --no-jit --case "RGB u8, gauss5" --case "small 64"
    """
    if threads < 1 or repeat < 1:
        raise UsageError(f"--threads and --repeat must be at least 1, got {threads} and {repeat}")
    import convtool.bench_harness as harness
    from convtool.bench_harness.timing import QUICK_ROUNDS, Rounds

    rounds = QUICK_ROUNDS if quick else Rounds(repeat=repeat)
    results = harness.run(quick=quick, threads=threads, rounds=rounds, backends=not auto_only, jit=not no_jit,
                          small=not no_small, only=only)
    click.echo(harness.dumps(results) if as_json else "\n".join(render(results)))
