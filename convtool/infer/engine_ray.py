"""classify, segment and filter as Ray Data pipelines (``--ray``); imported only when asked for.

The job is the local one, cut at the same seams: the files are listed on the driver and grouped into
chunks; read tasks decode a chunk with the local decode stage (``decode.decode_group``); an actor pool
(one model session or one warmed-up filter core per actor) runs the local model stage on it and
publishes per-file outputs; the driver receives the same chunk results, in file order, as the local
loop yields them and writes the result file with the same writer. Chunks travel pickled, one row each.

Ray retries a task or restarts an actor that dies; every per-file write replaces its own earlier
attempt atomically (outputs that existed before the run were refused up front), so a retry neither
loses nor duplicates a row.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from convtool.errors import OutputError, UsageError

RAY_MISSING = ("--ray needs Ray, which is not installed: pip install 'convtool[ray]' "
               "(uv: uv sync --extra ray, or uv run --extra ray convtool ...)")
FAIL_ONCE_ENV = "CONVTOOL_RAY_FAIL_ONCE"  # tests: a marker file whose presence kills one actor once
_SEPARATOR = "\0"  # between the paths of a group: the one character a path cannot hold
# chunks queued at each actor: with Ray Data's default (2) an actor sat idle for up to ~0.1 s between
# chunks waiting for the next; with 4 the gap is ~10 ms (1,000 photos in 64-image chunks, 2 actors)
TASKS_PER_ACTOR = 4


@dataclass
class Cluster:
    """The Ray cluster a run used: where, how big, and how many actors the model stage gets."""

    address: str
    nodes: int
    cpus: int
    gpus: int
    started_here: bool
    on_this_machine: bool = False  # every node runs here: they all see the driver's files
    pool: int = 0  # the actors a run started (no more than it had chunks)

    @property
    def actors(self) -> int:
        """One per GPU (CPUs left to the decode tasks); else one per CPU, each decoding its own chunks."""
        return self.gpus if self.gpus else max(1, self.cpus)

    def describe(self) -> str:
        where = "a local Ray started for this run" if self.started_here else f"Ray at {self.address}"
        actors = self.pool or self.actors
        return (f"{where}: {self.nodes} node{'s' * (self.nodes != 1)}, {self.cpus} CPUs, {self.gpus} GPUs, "
                f"{actors} actor{'s' * (actors != 1)}")


def import_ray():
    """Ray (not yet Ray Data, which :func:`connect` imports while the cluster starts), or a UsageError
    saying which install command adds it."""
    # Ray's `uv run` hook would make every worker re-run `uv run`, re-syncing the environment without
    # convtool's extras: workers use this interpreter as it is instead (convtool[ray] on every node).
    # Ray reads this when it is first imported.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's C++ log lines; failures still raise
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    if any(importlib.util.find_spec(name) is None for name in ("pyarrow", "pandas")):  # Ray without [data]
        raise UsageError(RAY_MISSING)
    return ray


@contextmanager
def connect(address: str | None = None) -> Iterator[Cluster]:
    """Join the cluster at ``address`` (``auto`` when ``RAY_ADDRESS`` is set), or start a local Ray for the run.

    A Ray already initialised in this process (a test's cluster) is used as it is and left running.
    Authentication stays as the cluster has it (token auth is Ray's default); convtool never turns it off.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address is None and os.environ.get("RAY_ADDRESS"):
            address = "auto"
        _check_reachable(address)
        _init(ray, address)
        started = True
    else:
        import ray.data  # noqa: F401
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # results reach the driver in file order
        context.enable_progress_bars = sys.stderr.isatty()  # Ray's own bars on a terminal, no log lines else
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        resources = ray.cluster_resources()
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        here = ray.util.get_node_ip_address()
        where = ray.get_runtime_context().gcs_address
        new = started and address is None and where != _ray_start_address()  # not a `ray start` cluster joined
        yield Cluster(where, len(nodes), int(resources.get("CPU", 0)), int(resources.get("GPU", 0)), new,
                      all(node.get("NodeManagerAddress") == here for node in nodes))
    finally:
        if started:
            ray.shutdown()


def _ray_start_address() -> str | None:
    """The cluster started on this machine with ``ray start``, which ``ray.init()`` without an address joins."""
    temp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        return (Path(temp) / "ray" / "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def _init(ray, address: str | None) -> None:
    """``ray.init`` while a thread imports Ray Data (each takes seconds; starting the cluster mostly waits).

    ``ray.init`` itself stays in this thread: the processes it starts die with the thread that started them.
    """
    imported: list[BaseException] = []

    def import_ray_data() -> None:
        try:
            import ray.data  # noqa: F401
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the caller's thread
            imported.append(exc)

    importing = threading.Thread(target=import_ray_data, name="import ray.data", daemon=True)
    importing.start()
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, no token: Ray's own first line says which
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UsageError(f"`ray` {address or ''}: cannot start or join Ray ({reason}){_auth_hint(address)}") from None
    finally:
        importing.join()
    if imported:
        raise imported[0]


def _auth_hint(address: str | None) -> str:
    """What to set when joining a cluster by address without token authentication turned on here.

    Ray turns token auth on by itself only for a cluster it finds on its own (no address, or ``auto``
    without ``RAY_ADDRESS``).
    """
    if address in (None, "auto"):
        address = os.environ.get("RAY_ADDRESS")
    if address in (None, "auto", "local") or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return ("; if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token and give its "
            "token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Refuse a HOST:PORT nothing answers at within ``timeout`` (Ray itself would retry for minutes)."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"`ray` {address}: not HOST:PORT, auto or ray://HOST:PORT")
    import socket

    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"`ray` {address}: nothing answers there ({exc.strerror or exc}); is `ray start --head` "
                         "running on that machine, and is the port open to this one?") from None


def check_shared_folder(folder: Path) -> None:
    """Refuse an output folder that some node of the cluster cannot write (it must be shared)."""
    ray = import_ray()

    @ray.remote(num_cpus=0)
    def writable(path: str) -> tuple[str, bool]:
        import socket

        return socket.gethostname(), os.path.isdir(path) and os.access(path, os.W_OK)

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
    checks = [writable.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
        str(folder.resolve())) for node in nodes]
    for host, ok in ray.get(checks):
        if not ok:
            raise OutputError(f"{folder}: not writable from Ray node {host}; the output folder must be on a "
                              "filesystem every node sees")


def groups(files: Sequence[str], size: int) -> list[dict]:
    """Rows of the listing dataset: one per chunk of ``size`` files, in order."""
    return [{"group": i // size, "paths": _SEPARATOR.join(map(str, files[i : i + size]))}
            for i in range(0, len(files), size)]


def run_stages(cluster: Cluster, rows: list[dict], stage: type, stage_kwargs: dict,
               decode: Callable | None = None) -> Iterator:
    """Run ``stage`` actors over ``rows`` (after ``decode`` tasks, if given); yield each row's result in order.

    Batches are NumPy dicts of one row (one chunk of files): no pandas, no per-file rows.
    """
    ray = import_ray()
    cluster.pool = max(1, min(cluster.actors, len(rows)))  # no actor without a chunk to work on
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))  # one chunk per block: steady streaming
    if decode is not None:  # one CPU each, feeding the GPU actors
        dataset = dataset.map_batches(decode, batch_size=1, batch_format="numpy", num_cpus=1)
    dataset = dataset.map_batches(  # Ray Data restarts a dead actor and retries its task (its defaults)
        stage, batch_size=1, batch_format="numpy", fn_constructor_kwargs=stage_kwargs,
        compute=ray.data.ActorPoolStrategy(size=cluster.pool, max_tasks_in_flight_per_actor=TASKS_PER_ACTOR),
        num_cpus=0 if cluster.gpus else 1, num_gpus=1 if cluster.gpus else 0,
    )
    for batch in dataset.iter_batches(batch_size=1, batch_format="numpy"):
        yield pickle.loads(batch["result"][0])


def _paths(batch: dict) -> list[str]:
    return str(batch["paths"][0]).split(_SEPARATOR)


class DecodeStage:
    """Decode one group of files with the local decode stage (bad files become failures).

    A task of its own before GPU actors; called inside the model actors on CPU-only clusters.
    """

    def __init__(self, preparer, keep_images: bool, draft: bool) -> None:
        self.preparer, self.keep_images, self.draft = preparer, keep_images, draft

    def decode(self, batch: dict) -> list:
        from convtool.infer.decode import decode_group  # the local job's decoding stage, as it is

        return decode_group(_paths(batch), self.preparer, keep_images=self.keep_images, draft=self.draft)

    def __call__(self, batch: dict) -> dict:
        return _row(batch, (self.decode(batch), _node()))


def _node() -> str:
    """The Ray node this worker runs on (to report where the work went)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _row(batch: dict, value) -> dict:
    """One output row: the group number and ``value`` pickled (numpy arrays travel as out-of-band buffers)."""
    return {"group": batch["group"], "result": np.array([pickle.dumps(value, protocol=5)], dtype=object)}


def _set_up_worker() -> None:
    """An actor's process, set up as the local path's decoding workers are: niced below the driver and
    Ray's own processes (which hand it its next chunks), freed memory kept for reuse."""
    from convtool.infer.decode import set_up_worker

    set_up_worker()


def _fail_once() -> None:
    """Test hook: with ``CONVTOOL_RAY_FAIL_ONCE`` naming an existing file, remove it and kill this worker."""
    marker = os.environ.get(FAIL_ONCE_ENV)
    if marker:
        try:
            os.unlink(marker)
        except FileNotFoundError:
            return
        os._exit(1)


class ModelStage:
    """Actor: one model session for the actor's life; runs the local job's model stage on decoded chunks.

    With ``decode`` (CPU-only clusters) the actor decodes its chunks itself: one actor per CPU, no
    decoded pixels through the object store.
    """

    def __init__(self, *, job: str, model_path: str, device: str, recipe, options: dict,
                 decode: DecodeStage | None = None) -> None:
        from convtool.infer.session import open_session

        _set_up_worker()
        self.decode = decode
        self.model = open_session(model_path, device, threads=1)
        self.job: Any
        if job == "classify":
            from convtool.infer.classify import Classifier

            self.job = classifier = Classifier(self.model, recipe, **options)
            self.step = classifier._classify_chunk  # the local job's model stage
        else:
            from convtool.infer.segment import Segmenter

            publish = options.pop("publish")
            self.job = segmenter = Segmenter(self.model, recipe, **options)
            self.step = lambda chunk, timings: publish(segmenter, segmenter._segment_chunk(chunk, timings))

    def __call__(self, batch: dict) -> dict:
        from convtool.infer.pipeline import Timings

        _fail_once()
        if self.decode is not None:
            chunks, decoded_on = self.decode.decode(batch), _node()
        else:
            chunks, decoded_on = pickle.loads(batch["result"][0])
        timings = Timings()
        results = []
        for chunk in chunks:
            timings.decode += chunk.decode_seconds
            results.append(self.step(chunk, timings))
        ran_on = f"{self.model.device} ({self.model.provider})"
        return _row(batch, (results, timings, ran_on, self.job.warnings, {decoded_on, _node()}))


@dataclass
class RayRun:
    """What a Ray run used, filled in as it goes: the cluster, the devices the actors ran on, their warnings."""

    cluster: Cluster | None = None
    devices: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)  # the nodes that decoded or ran the model

    def describe(self) -> str:
        cluster = self.cluster.describe() if self.cluster else "Ray"
        text = f"{cluster}; work ran on {len(self.nodes)} node{'s' * (len(self.nodes) != 1)}"
        return f"{', '.join(sorted(self.devices))} on {text}" if self.devices else text


def model_results(address: str | None, files: Sequence[str], timings, run: RayRun, *, job: str, model_path: Path,
                  device: str, recipe, preparer, options: dict, chunk_size: int,
                  keep_images: bool = False, draft: bool = False) -> Iterator:
    """The local job's chunk results (``ChunkResult`` or ``SegmentChunk``) from Ray, in file order.

    ``timings`` gets the workers' decode/infer/post times and the driver's wall time; ``run`` the cluster,
    devices and warnings. The output folder (segment) must already exist and be shared by every node.
    """
    with connect(address) as cluster:
        run.cluster = cluster
        if job == "segment" and not cluster.on_this_machine:  # here: the driver made it and checked it
            check_shared_folder(options["publish"].folder)
        decode = DecodeStage(preparer, keep_images, draft)
        kwargs = dict(job=job, model_path=str(Path(model_path).resolve()), device=device if cluster.gpus else "cpu",
                      recipe=recipe, options=options, decode=None if cluster.gpus else decode)
        started = time.perf_counter()
        for results, worker, ran_on, warnings, nodes in run_stages(
                cluster, groups(files, chunk_size), ModelStage, kwargs, decode if cluster.gpus else None):
            run.nodes |= nodes
            for name in ("images", "decode", "infer", "post"):
                setattr(timings, name, getattr(timings, name) + getattr(worker, name))
            run.devices.add(ran_on)
            run.warnings.extend(w for w in warnings if w not in run.warnings)
            yield from results
        timings.wall += time.perf_counter() - started


class SegmentPublisher:
    """Segment's publish step in the actors: each mask and overlay written to the shared output folder."""

    def __init__(self, folder: Path, overlay: bool, alpha: float) -> None:
        self.folder, self.overlay, self.alpha = folder, overlay, alpha

    def __call__(self, segmenter, chunk):
        from convtool.infer.segment import SegmentChunk, output_paths, publish

        done = [publish(segmenter, result, *output_paths(result.path, self.folder, self.overlay), self.alpha)
                for result in chunk.results]
        return SegmentChunk(done, chunk.failures)


class FilterStage:
    """Actor: runs the local filter job (read, filter, encode to its temporary file) and publishes each output.

    Outputs that existed were refused on the driver, so publishing replaces only this run's own earlier
    attempt (a retried chunk); the filter core stays loaded (Numba JIT warm) for the actor's life.
    """

    def __init__(self) -> None:
        _set_up_worker()

    def __call__(self, batch: dict) -> dict:
        from convtool.batchfilter import publish, run_job
        from convtool.errors import ConvtoolError

        _fail_once()
        results = []
        for job in pickle.loads(batch["jobs"][0]):
            result = run_job(job)
            if result.error is None:
                try:
                    publish(job, overwrite=True)
                except ConvtoolError as exc:
                    result.error = str(exc)
            results.append(result)
        return _row(batch, (results, {_node()}))


def filter_results(address: str | None, jobs: Sequence, run: RayRun, chunk_size: int = 8) -> Iterator:
    """The local filter jobs' results (``batchfilter.FileResult``), in input order, run by Ray actors."""
    with connect(address) as cluster:
        run.cluster = cluster
        if jobs and not cluster.on_this_machine:  # here: the driver made it and checked it
            check_shared_folder(jobs[0].target.parent)
        rows = [{"group": i // chunk_size, "jobs": pickle.dumps(list(jobs[i : i + chunk_size]))}
                for i in range(0, len(jobs), chunk_size)]
        for results, nodes in run_stages(cluster, rows, FilterStage, {}):
            run.nodes |= nodes
            yield from results

