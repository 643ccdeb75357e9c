"""Ray as an executor (sim/analysis/ray_executor.py, ``--ray``): a sweep and a load curve on a
local Ray instance started here give exactly what the local executor gives, point for point;
Ray's workers keep what a point loads once per process; a wrong ``--ray`` is one line and exit 2;
Ray is imported only when asked for. One local Ray instance (about 5 s to start) serves the whole
file; the points are tiny (60 requests, roofline profile), as in tests/test_sweep.py.

Ray is an optional extra: without it this file is skipped, saying so (CI installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'capsim[ray]'); .ci/run installs it")

import yaml  # noqa: E402 - after the skip: nothing of this file runs without Ray

from sim.analysis.curve import load_curve  # noqa: E402
from sim.analysis.executor import InlineExecutor  # noqa: E402
from sim.analysis.ray_executor import RayExecutor, RayUnavailable  # noqa: E402
from sim.analysis.sweep import sweep  # noqa: E402
from sim.config import load_scenario  # noqa: E402
from tests.helpers import assert_one_line_error, run_app  # noqa: E402
from tests.test_sweep import BASE, SIX  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_ex():
    """One local Ray instance of 2 CPUs for the file, stopped at its end."""
    ex = RayExecutor(None, num_cpus=2)
    assert ex.owned
    yield ex
    ex.shutdown()


def _worker_state() -> tuple[int, bool]:
    """In a worker: its process id, and whether a sweep point has warmed this process."""
    from sim.analysis import sweep as sweep_module

    return os.getpid(), bool(sweep_module._WARM)


def test_a_sweep_on_ray_equals_the_local_one_point_for_point(tmp_path, ray_ex):
    local = sweep(SIX, tmp_path / "local", executor=InlineExecutor())
    on_ray = sweep(SIX, tmp_path / "ray", executor=ray_ex)
    assert local.num_rows == 6
    assert on_ray.sort_by("point_id").equals(local.sort_by("point_id"))
    # The points ran in Ray's worker processes (at most one per CPU: Ray reuses them), and each
    # stays warm for the next task: the catalogs and profiles load once per process, not per point.
    states = [f.result() for f in [ray_ex.submit(_worker_state) for _ in range(6)]]
    pids = {pid for pid, _ in states}
    assert len(pids) <= 2 and os.getpid() not in pids, states
    assert all(warm for _, warm in states), states


def test_a_load_curve_on_ray_equals_the_local_one(ray_ex):
    sc = load_scenario(BASE)
    kwargs = dict(slos=["ttft_p99=2s"], rates=[2.0, 64.0], seeds=2, rel_tol=0.2)
    local = load_curve(sc, workers=1, **kwargs)
    on_ray = load_curve(sc, executor=ray_ex, **kwargs)
    assert local.points.num_rows == 4 and local.bisection.num_rows > 0
    assert on_ray.points.equals(local.points)
    assert on_ray.bisection.equals(local.bisection)
    assert on_ray.max_rate == local.max_rate


def test_the_cli_runs_a_sweep_with_ray(tmp_path, ray_ex):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(SIX))
    # Ray is connected in this process already (the fixture): the command uses that connection,
    # and leaves it connected when done.
    r = run_app("sweep", spec, "-o", tmp_path / "out", "--ray", "local", "-q")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "out" / "points").glob("point_id=*/summary.parquet"))) == 6
    assert ray_ex._ray.is_initialized()


def test_a_bad_ray_address_is_one_line_and_exit_2(tmp_path):
    """In a process of its own, so that Ray's own logging on stderr would show, and nothing is
    connected: port 1 refuses at once (the reachability check waits at most 5 s otherwise)."""
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(SIX))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "sim.cli", "sweep", str(spec), "-o", str(tmp_path / "out"), "-q",
                           "--ray", "127.0.0.1:1"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["capsim: error: --ray: cannot connect to Ray at 127.0.0.1:1: "
                                                "Connection refused"], done.stderr
    assert not (tmp_path / "out" / "points").exists()


@pytest.mark.parametrize(("args", "needles"), [
    (["--ray", "no-port-here"], ["--ray: cannot connect to Ray at 'no-port-here'", "HOST:PORT"]),
    (["--ray", "auto", "--workers", "2"], ["--workers 2 with --ray auto: give one"]),
])
def test_bad_executor_options_are_one_line_and_exit_2(tmp_path, args, needles):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(SIX))
    assert_one_line_error(run_app("sweep", spec, "-o", tmp_path / "out", "-q", *args), *needles)
    assert_one_line_error(run_app("curve", "--rates", "2,4", "-o", tmp_path / "c", "-q", *args), *needles)


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    with pytest.raises(RayUnavailable, match=r"^Ray is not installed .*: pip install 'capsim\[ray\]'$"):
        RayExecutor("auto")


def test_ray_is_imported_only_when_asked_for():
    code = ("import sys, sim, sim.cli.app, sim.analysis.sweep, sim.analysis.curve, sim.analysis.ray_executor\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
