"""--ray on a two-node Ray cluster on this machine: work lands on both nodes, results equal local mode.

The second node declares a GPU (a resource only: the model still runs on the CPU), so this test also runs
the GPU-shaped pipeline: decode tasks on CPUs feeding one model actor per GPU.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from infer_helpers import lenet, write_mnist_pngs

from convtool.cli.main import cli

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # read when ray is imported: no `uv run` workers
ray = pytest.importorskip("ray")


@pytest.fixture
def two_nodes(monkeypatch):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_two_nodes_share_the_work_and_give_the_local_rows(two_nodes, tmp_path):
    write_mnist_pngs(tmp_path / "digits", 96)
    model = lenet(tmp_path / "lenet.onnx")
    runner = CliRunner()
    args = ["classify", str(tmp_path / "digits"), "-m", str(model), "--batch", "8"]
    local = runner.invoke(cli, [*args, "-o", str(tmp_path / "local.csv")], catch_exceptions=False)
    on_ray = runner.invoke(cli, [*args, "-o", str(tmp_path / "ray.csv"), "--ray"], catch_exceptions=False)
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()
    assert "2 nodes, 2 CPUs, 1 GPUs, 1 actor;" in on_ray.stderr and "work ran on 2 nodes" in on_ray.stderr
