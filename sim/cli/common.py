"""What the ``capsim`` command modules share: the one-line refusal, loading a scenario with its
``--set`` overrides, the executor from ``--workers``/``--ray``, number formatting, durations and
the measuring progress bar.

The command line is layered: :mod:`sim.cli.app` (the app) imports the command modules
(``sim.cli.run``, ``sim.cli.workload``, ``sim.cli.catalog``, ``sim.cli.calibrate``,
``sim.cli.validate``, ``sim.cli.curve``, ``sim.cli.compare``, ``sim.cli.plan``), each of which imports this module
and the rest of capsim; nothing imports upwards (the import contracts in ``pyproject.toml``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional, TypeVar

import typer
import yaml

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from sim.config import Scenario

__all__ = ["UsageError", "apply_set", "executor_from_args", "fail", "fmt", "measuring_progress", "parse_duration",
           "ray_option", "scenario_from_args", "search_inputs", "split_list"]

T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user; printed as one line, exit code 2."""


def fail(message: str) -> NoReturn:
    """Print ``capsim: error: MESSAGE`` on stderr and exit 2: how every refusal of user input ends."""
    typer.echo(f"capsim: error: {message}", err=True)
    raise typer.Exit(2)


def fail_with_flag(error: Exception, flags: tuple[tuple[str, str], ...]) -> NoReturn:
    """:func:`fail` with ``error``'s one line, prefixed with the first flag of ``flags``
    ((flag, key) pairs) whose key the message starts with: a library error names its argument
    (``hardware 'h100': ...``), the command line the flag that set it."""
    flag = next((f for f, k in flags if str(error).startswith(k)), None)
    fail(f"{flag}: {error}" if flag else str(error))


def apply_set(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to nested dicts; ``classes.0`` indexes lists.
    ``null`` removes the key, so that its default applies (for an optional key, the default is unset)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UsageError(f"--set {assignment!r}: expected KEY=VALUE, e.g. workload.arrival.rate_per_s=20")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node: Any = data
    parts = key.split(".")
    if "" in parts:
        raise UsageError(f"--set {assignment!r}: the key {key!r} has an empty part; keys are dotted paths such as "
                         "engine.max_num_seqs")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UsageError(f"--set {key}: {'.'.join(parts[:depth])} is a list of {len(node)}; "
                                 f"{part!r} is not an index in it")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last and value is None:  # null removes the key: its default applies
                node.pop(part, None)
            elif last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UsageError(f"--set {key}: {'.'.join(parts[:depth])} holds a value, not keys")


def scenario_from_args(scenario: Optional[Path], sets: list[str], seed: Optional[int]) -> Scenario:
    """The scenario a command was given (the embedded default when ``scenario`` is None), with its
    ``--set`` overrides and ``--seed`` applied, validated; a bad one is refused in one line."""
    from sim.config import load_scenario, scenario_data
    from sim.errors import ScenarioError

    try:
        data = scenario_data(scenario)
        for s in sets:
            apply_set(data, s)
        if seed is not None:
            data["seed"] = seed
        try:
            return load_scenario(data)
        except ScenarioError as e:
            raise ScenarioError(f"{scenario or 'default scenario'}: {e}") from None
    except (ScenarioError, UsageError) as e:
        fail(str(e))


def search_inputs(scenario: Optional[Path], sets: list[str], slo: list[str], quant: Optional[str], out_name: str,
                  rate: Optional[float], workers: Optional[int]) -> tuple[Scenario, list[Any], list[str]]:
    """What a search over options (``capsim compare``, ``capsim plan``) takes from its command line,
    each checked in one line naming its option: the scenario (with ``--set``), the SLO targets, the
    quantizations (default: the scenario's), a target rate > 0 and a worker count >= 1 when given,
    and an output directory that can be written (checked before any simulation)."""
    from sim.analysis.slo import parse_slo
    from sim.results.records import OutputError, check_output_dir

    if rate is not None and not rate > 0:
        fail(f"--rate {rate:g}: must be a number of requests/s > 0")
    if workers is not None and workers < 1:
        fail(f"--workers {workers}: must be >= 1")
    targets = []
    for text in slo:
        try:
            targets.append(parse_slo(text))
        except ValueError as e:
            fail(f"--slo {e}")
    sc = scenario_from_args(scenario, sets, None)
    try:
        quants = split_list(quant, "--quant") if quant is not None else [sc.quantization]
        check_output_dir(out_name, "replace")
    except OutputError as e:
        fail(f"--out {e}")
    except ValueError as e:
        fail(str(e))
    return sc, targets, quants


def ray_option() -> Any:
    """The ``--ray auto|ADDRESS`` option, the same on every command that runs simulations in
    parallel (sweep, curve, compare, plan)."""
    return typer.Option(None, "--ray", metavar="auto|ADDRESS", help="Run the simulations on a Ray cluster instead "
                        "of local processes: auto joins the cluster this machine belongs to, HOST:PORT (or "
                        "ray://HOST:PORT) a given one, local starts a Ray instance here. Needs pip install "
                        "'capsim\\[ray]', and capsim on every node. Not with --workers.")


def executor_from_args(workers: Optional[int], ray: Optional[str]) -> Executor:
    """The executor a command's ``--workers N`` and ``--ray ADDRESS`` ask for: a Ray executor
    (:class:`sim.analysis.ray_executor.RayExecutor`) with ``--ray``, else a local pool of N
    processes (default: every core; 1 runs in this process). Both given is refused, as is a bad
    count, missing Ray or an address that cannot be reached: one line each. Make it before any
    progress bar starts (a local pool forks its workers now), and shut it down when done."""
    from sim.analysis.executor import local_executor

    if workers is not None and workers < 1:
        fail(f"--workers {workers}: must be >= 1")
    if ray is None:
        return local_executor(workers)
    if workers is not None:
        fail(f"--workers {workers} with --ray {ray}: give one; on Ray the cluster's CPUs set the parallelism")
    from sim.analysis.ray_executor import RayExecutor, RayUnavailable

    try:
        return RayExecutor(ray)
    except RayUnavailable as e:
        fail(f"--ray: {e}")


def split_list(text: str, option: str) -> list[str]:
    """``a,b,c`` -> ["a", "b", "c"] (spaces trimmed); ValueError naming the option when empty."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ValueError(f"{option} {text!r}: give a comma-separated list, e.g. h100-sxm,h200")
    return items


def fmt(x: Any, unit: str = "s") -> str:
    """A table cell: seconds as ms below one second (``unit="s"``), other numbers with thousands
    separators (``unit=""``), "-" when absent."""
    if x is None:
        return "-"
    if unit == "s":
        return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"
    return f"{x:,.1f}"


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str, option: str = "--budget") -> float:
    """Seconds in ``text``: ``300``, ``90s``, ``5m``, ``1.5h``; ValueError naming ``option`` and the
    text otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(s|m|min|h)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{option} {text!r}: expected a positive duration such as 300, 90s, 5m or 1.5h")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def measuring_progress(fn: Callable[[Callable[[int, int, float], None]], T]) -> T:
    """``fn(progress)`` under a "measuring" progress bar on stderr, where ``progress(done, total,
    eta_s)`` advances it (the harness's calibration, for ``calibrate`` and ``validate``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("measuring"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("steps, ETA {task.fields[eta]}"), transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("m", total=None, eta="?")

        def progress(done: int, total: int, eta_s: float) -> None:
            bar.update(task, completed=done, total=total, eta=f"{eta_s:,.0f} s")

        return fn(progress)
