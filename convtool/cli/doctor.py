"""``convtool doctor``: what this machine can run (CPU, GPU, Ray) and the command that fixes what is missing."""

from __future__ import annotations

import json

import click


@click.command(short_help="Say what this machine can run, and how to fix what is missing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-try", is_flag=True, help="Only look for drivers and libraries; do not run a CUDA kernel or session.")
def command(as_json: bool, no_try: bool) -> None:
    """Versions, CPU cores and SIMD, the NVIDIA driver, each CUDA library (found where, or missing),
    whether numba's CUDA target and onnxruntime's CUDA provider really run, and Ray.

    \b
    Examples:
      convtool doctor
      convtool doctor --json > machine.json
    """
    from convtool.doctor import diagnose

    report = diagnose(try_cuda=not no_try)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _render(report)


def _render(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from convtool.cli.console import console as make_console

    console = make_console()  # piped: no width limit, so paths and commands come out whole
    versions = ", ".join(f"{name} {version}" for name, version in report.packages.items() if version)
    absent = ", ".join(name for name, version in report.packages.items() if version is None)
    console.print(f"convtool {report.convtool} on Python {report.python}, {report.platform}")
    console.print(escape(f"packages: {versions}" + (f" (not installed: {absent})" if absent else "")))
    console.print(escape(f"CPU: {report.cpu_cores} cores, {report.cpu_model}; SIMD: {', '.join(report.simd) or 'none found'}"))
    console.print(escape(f"NVIDIA driver: {_driver(report.driver)}"))

    table = Table(box=None, pad_edge=False, title="CUDA libraries", title_justify="left")
    for column in ("library", "wanted by", "found", "where"):
        table.add_column(column, overflow="fold")
    for wanted_by, libraries in (("onnxruntime", report.onnxruntime_libraries), ("numba", report.numba_libraries)):
        for lib in libraries:
            found = "[green]yes[/green]" if lib.found else "[red]missing[/red]"
            where = escape(f"{lib.path} ({lib.source})") if lib.found else ""
            table.add_row(escape(lib.name), wanted_by, found, where)
    console.print(table)
    for trial in report.trials:
        mark = "[green]runs[/green]" if trial.ok else "[red]does not run[/red]"
        console.print(f"{trial.name}: {mark}: {escape(trial.detail)}")
    if report.gpu_cost:
        console.print(escape(_gpu_cost(report.gpu_cost)))
    ray = report.ray
    console.print(escape(f"Ray: {ray.version or 'not installed'}; cluster: {ray.cluster}; token: {ray.token}"))
    if report.fixes:
        console.print("to fix:")
        for fix in report.fixes:
            console.print(escape(f"  {fix}"))
    else:
        console.print("nothing to fix")


def _gpu_cost(cost: dict) -> str:
    device, reason = cost.get("device"), cost.get("reason")
    figures = device or cost.get("defaults") or {}
    which = "this GPU's figures" if device else f"defaults (no device: {reason})"
    sources = f"; from {', '.join(figures['sources'])}" if figures.get("sources") else ""
    return (f"GPU cost estimate uses {which}: {figures.get('name')}, memory {figures.get('memory_gbps')} GB/s, "
            f"PCIe {figures.get('pcie_gbps')} GB/s each way, {figures.get('gflops')} GFLOP/s{sources}")


def _driver(driver) -> str:
    if not driver.present:
        return "not found (no /proc/driver/nvidia, no libcuda.so): CPU only"
    gpus = "unknown number of GPUs" if driver.gpus is None else f"{driver.gpus} GPU{'' if driver.gpus == 1 else 's'}"
    return f"found ({driver.version or 'version unknown'}), {gpus}" + (f"; {driver.error}" if driver.error else "")
