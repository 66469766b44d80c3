"""No jitted kernel reads a module setting that a test changes.

Numba freezes a global's value into the compiled code and, with ``cache=True``, into its disk cache: a
test that monkeypatched such a setting once left every later process running with the test's value
(a chunk of 8 outputs instead of 4,096: 4096^2 Sobel 7.6 -> 43 ms). Settings that tests change must be
read on the Python side and passed to the kernels as arguments.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL_MODULES = ("convtool/conv/_cpu_kernels.py", "convtool/conv/cuda.py", "convtool/nn/_conv_kernels.py",
                  "convtool/nn/_kernels.py")


def _globals_read_by_jitted_functions(path: Path) -> dict[str, set[str]]:
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and any("jit" in ast.unparse(d) for d in node.decorator_list):
            found[node.name] = {n.id for n in ast.walk(node)
                                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id.isupper()}
    return found


def _settings_tests_change() -> set[str]:
    pattern = re.compile(r"""setattr\(\s*\w+\s*,\s*["']([A-Z][A-Z0-9_]*)["']""")
    return {name for test in (ROOT / "tests").glob("*.py") for name in pattern.findall(test.read_text())}


def test_jitted_kernels_read_no_setting_a_test_changes():
    patched = _settings_tests_change()
    assert {"THREADS", "IN_PLACE_CHUNK", "FLAT_PIXELS"} <= patched  # the scan sees the tests' monkeypatching
    jitted = {}
    for module in KERNEL_MODULES:
        jitted.update({f"{module}:{name}": names for name, names in
                       _globals_read_by_jitted_functions(ROOT / module).items()})
    assert "TILE" in jitted["convtool/conv/_cpu_kernels.py:_separable"]  # the scan sees the kernels' settings
    offending = {name: sorted(names & patched) for name, names in jitted.items() if names & patched}
    assert offending == {}
