"""``capsim calibrate --engine-fit``: engine profiles fitted from the command line, and used.

- A tiny CSV whose throughputs are those of known efficiencies (each row replayed at them, as the
  fit prices rows) is fitted back by the command, which writes a TOML file (``-o FILE.toml``, or
  ``-o DIR`` for ``DIR/engine_profiles.toml``) with progress on stderr; a scenario names that file
  with ``profile: {kind: auto, engine: NAME, engine_profiles: FILE}`` and is priced by it.
- A missing file, a CSV without an engine column, a bad row, an engine split over two files and
  flags that do not go together are refused in one line with exit 2 before any simulation; a
  scenario naming a missing or unusable profiles file is refused in one line.
- ``--help`` teaches the flag. Each fit simulates a few hundred requests per row: seconds.
"""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest

import sim
from sim.fitting import engine_fit
from sim.fitting.benchmark_csv import read_benchmarks
from tests.helpers import assert_one_line_error, run_app

ENGINE = "tensorrt-llm-0.17"
HEADER = ["engine", "model", "quantization", "hardware", "tp", "input_tokens", "output_tokens", "concurrency",
          "request_rate", "num_requests", "output_tokens_per_s", "kv_cache_dtype", "kv_memory_fraction"]
# (input, output, concurrency, request_rate, num_requests): five all-at-once rows (as a full
# concurrency, or as rate inf) at different ISL/OSL and batch sizes, so that the four numbers a
# dense model at TP 1 has (sim.fitting.engine_fit._free) are pinned down, and the fit is
# cross-validated by ISL/OSL.
ROWS = [(128, 128, "200", "", 200), (1024, 128, "", "inf", 100), (128, 512, "300", "", 300),
        (512, 256, "40", "", 40), (2048, 64, "", "inf", 60)]
TRUE = {"compute_efficiency": 0.5, "memory_efficiency": 0.7, "overhead_s": 0.004, "overlap": 0.6}
WORKLOAD = {"arrival": {"rate_per_s": 2.0}, "num_requests": 5,
            "classes": [{"name": "x", "prompt_tokens": {"dist": "fixed", "value": 64},
                         "output_tokens": {"dist": "fixed", "value": 8}}]}


def _write(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _cells(spec: tuple, throughput: object = 1000.0, engine: str = ENGINE) -> list[object]:
    i, o, conc, rate, n = spec
    return [engine, "llama-3.1-8b", "fp8", "h100-sxm", 1, i, o, conc, rate, n, throughput, "fp8", 0.95]


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory) -> Path:
    """The benchmark an engine at efficiencies TRUE would report: each row replayed at them."""
    d = tmp_path_factory.mktemp("engine-fit")
    draft = read_benchmarks(_write(d / "draft.csv", [_cells(s) for s in ROWS]))
    got = [engine_fit.replay(engine_fit.row_schedule(r), TRUE)["output_tokens_per_s"] for r in draft]
    return _write(d / "tiny.csv", [_cells(s, repr(t)) for s, t in zip(ROWS, got)])


@pytest.fixture(scope="module")
def fitted(tiny_csv, tmp_path_factory):
    """``capsim calibrate --engine-fit tiny.csv -o DIR/mine.toml --max-requests 300``, and what
    reached :func:`sim.fitting.engine_fit.fit_file`."""
    out = tmp_path_factory.mktemp("out") / "mine.toml"
    calls = []
    real = engine_fit.fit_file

    def spy(path, **kw):
        calls.append((Path(path), kw["max_requests"]))
        return real(path, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_fit, "fit_file", spy)
        result = run_app("calibrate", "--engine-fit", tiny_csv, "-o", out, "--max-requests", 300)
    return result, out, calls


def test_the_command_writes_the_profiles_with_progress_on_stderr(fitted, tiny_csv):
    result, out, calls = fitted
    assert result.exit_code == 0, result.output
    assert calls == [(tiny_csv, 300)]  # --max-requests passed through
    stderr = result.stderr.splitlines()
    assert [line.split(" (")[0] for line in stderr if line.startswith("simulated row")] == [
        "simulated row 1", "simulated row 2", "simulated row 3", "simulated row 4", "simulated row 5"]
    assert any(line.startswith("cross-validation by isl/osl: 128/512 held out") for line in stderr)
    assert f"{ENGINE}: h100-sxm e_c " in result.stdout and "(5 rows)" in result.stdout
    assert f"engine profiles: {out}" in result.stdout
    assert f"profile: {{kind: auto, engine: {ENGINE}, engine_profiles: {out}}}" in result.stdout
    data = tomllib.loads(out.read_text())
    assert list(data) == [ENGINE] and data[ENGINE]["data"] == "tiny.csv"
    own = data[ENGINE]["gpus"]["h100-sxm"]
    assert own["rows"] == 5
    for k, v in TRUE.items():  # the truth comes back (every row's throughput was replayed at it)
        assert own[k] == pytest.approx(v, rel=0.05), (k, own)


def test_a_scenario_is_priced_by_the_written_file(fitted):
    _, out, _ = fitted
    own = tomllib.loads(out.read_text())[ENGINE]["gpus"]["h100-sxm"]
    s = sim.load_scenario({"model": "llama-3.1-8b", "quantization": "fp8", "hardware": "h100-sxm",
                           "profile": {"kind": "auto", "engine": ENGINE, "engine_profiles": str(out)},
                           "workload": WORKLOAD})
    p = s.build_profile()
    assert (p.compute_efficiency, p.memory_efficiency, p.overhead_s) == pytest.approx(
        (own["compute_efficiency"], own["memory_efficiency"], own["overhead_s"]))
    prov = sim.simulate(s).summary["profile"]
    assert (prov["kind"], prov["family"], prov["engine"]) == ("derived-from-measured", "engine", ENGINE)
    assert "fitted on 5 h100-sxm rows; 5 all-at-once rows of tiny.csv" in prov["source"]
    assert str(out) in prov["source"] and "calibration/data/engine_profiles.toml" not in prov["source"]
    # Another GPU takes the file's engine-wide fallback; the shipped profiles are untouched.
    a100 = sim.load_scenario({"hardware": "a100-80gb", "workload": WORKLOAD,
                              "profile": {"kind": "auto", "engine": ENGINE, "engine_profiles": str(out)}})
    assert "no a100-80gb rows: the engine-wide fallback over h100-sxm" in a100.build_profile().provenance.source
    shipped = sim.load_scenario({"hardware": "h100-sxm", "workload": WORKLOAD,
                                 "profile": {"kind": "auto", "engine": ENGINE}}).build_profile()
    assert shipped.compute_efficiency != pytest.approx(p.compute_efficiency)


def test_a_directory_out_holds_engine_profiles_toml(tiny_csv, tmp_path):
    out = tmp_path / "engines"
    r = run_app("calibrate", "--engine-fit", tiny_csv, "-o", out, "--max-requests", 100)
    assert r.exit_code == 0, r.output
    assert (out / "engine_profiles.toml").is_file()
    # The directory stands for its engine_profiles.toml in a scenario too.
    s = sim.load_scenario({"workload": WORKLOAD, "profile": {"kind": "auto", "engine": ENGINE,
                                                             "engine_profiles": str(out)}})
    assert s.build_profile().provenance.engine == ENGINE


# -- refused in one line, before any simulation -----------------------------------------------------

def test_a_missing_file_is_refused(tmp_path):
    r = run_app("calibrate", "--engine-fit", tmp_path / "nope.csv", "-o", tmp_path / "out")
    assert_one_line_error(r, "nope.csv: no such benchmark file")
    assert not (tmp_path / "out").exists()


def test_a_csv_without_an_engine_column_is_refused(tmp_path):
    path = _write(tmp_path / "b.csv", [_cells(ROWS[0])[1:]], header=HEADER[1:])
    r = run_app("calibrate", "--engine-fit", path, "-o", tmp_path / "out")
    assert_one_line_error(r, "b.csv: no row names its engine (column 'engine'")


def test_a_bad_row_is_refused_naming_file_row_and_column(tmp_path, tiny_csv):
    bad = _cells(ROWS[1])
    bad[1] = "llama-3-8b"
    path = _write(tmp_path / "b.csv", [_cells(ROWS[0]), bad])
    # The second file is bad: refused before the first is fitted.
    r = run_app("calibrate", "--engine-fit", tiny_csv, "--engine-fit", path, "-o", tmp_path / "out")
    assert_one_line_error(r, "b.csv: row 2, column 'model': unknown model 'llama-3-8b'")
    assert not r.stderr.startswith("simulated") and not (tmp_path / "out").exists()


def test_an_engine_split_over_two_files_is_refused(tmp_path, tiny_csv):
    r = run_app("calibrate", "--engine-fit", tiny_csv, "--engine-fit", tiny_csv, "-o", tmp_path / "out")
    assert_one_line_error(r, f"engine '{ENGINE}' also has rows in {tiny_csv}; put an engine's rows in one CSV")


def test_an_engine_without_all_at_once_rows_is_refused(tmp_path):
    path = _write(tmp_path / "timed.csv", [_cells((512, 64, "", "4", 20))])
    r = run_app("calibrate", "--engine-fit", path, "-o", tmp_path / "out.toml")
    assert_one_line_error(r, f"engine '{ENGINE}' has no row with every request sent at once")


def test_flags_that_do_not_go_together(tmp_path, tiny_csv):
    assert_one_line_error(run_app("calibrate", "--max-requests", 10, "--from-benchmarks", tiny_csv),
                          "--max-requests applies only with --engine-fit")
    assert_one_line_error(run_app("calibrate", "--engine-fit", tiny_csv, "--from-benchmarks", tiny_csv),
                          "--from-benchmarks does not apply with --engine-fit")
    assert_one_line_error(run_app("calibrate", "--engine-fit", tiny_csv, "--model", "llama-3.1-8b"),
                          "--model does not apply with --engine-fit")
    file = tmp_path / "a-file"
    file.write_text("")
    assert_one_line_error(run_app("calibrate", "--engine-fit", tiny_csv, "-o", file),
                          "exists and is not a directory; name a .toml file or a directory")
    assert_one_line_error(run_app("calibrate", "--engine-fit", tiny_csv, "--max-requests", 0), "--max-requests")


# -- a scenario naming a profiles file ----------------------------------------------------------------

@pytest.mark.parametrize("text, pattern", [
    (None, r"profile: .*none\.toml: no such engine profiles file \(write one with `capsim calibrate --engine-fit"),
    ("[x", r"profile: .*bad\.toml: not a valid TOML file"),
    ("", r"profile: .*bad\.toml: holds no engine profile"),
    ('["e"]\nfallback = {compute_efficiency = 2.0, memory_efficiency = 0.5, overhead_s = 0.0}\n',
     r'profile: .*bad\.toml: \["e"\.fallback\] compute_efficiency = 2\.0: must be in \(0, 1\]'),
    ('["e"]\n[e.fallback]\ncompute_efficiency = 0.5\nmemory_efficiency = 0.5\n',
     r'profile: .*bad\.toml: \["e"\.fallback\] overhead_s = None: expected a number'),
    ('["other"]\nfallback = {compute_efficiency = 0.5, memory_efficiency = 0.5, overhead_s = 0.0}\n',
     r"profile\.engine = 'e': no engine profile; known: other \(.*bad\.toml\)"),
], ids=["missing", "not-toml", "empty", "efficiency-above-1", "missing-key", "other-engine"])
def test_a_scenario_naming_an_unusable_file_is_refused_in_one_line(tmp_path, text, pattern):
    path = tmp_path / ("none.toml" if text is None else "bad.toml")
    if text is not None:
        path.write_text(text)
    with pytest.raises(sim.ScenarioError, match=pattern) as e:
        sim.load_scenario({"workload": WORKLOAD,
                           "profile": {"kind": "auto", "engine": "e", "engine_profiles": str(path)}})
    assert "\n" not in str(e.value)


def test_engine_profiles_without_engine_is_refused(tmp_path):
    with pytest.raises(sim.ScenarioError, match=r"profile\.engine_profiles = '.*' without engine: name the engine"):
        sim.load_scenario({"workload": WORKLOAD, "profile": {"kind": "auto", "engine_profiles": str(tmp_path)}})


def test_capsim_run_refuses_a_missing_profiles_file_in_one_line(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("profile: {kind: auto, engine: tensorrt-llm-0.17, engine_profiles: missing.toml}\n")
    assert_one_line_error(run_app("run", scenario, "--no-write"), "missing.toml: no such engine profiles file")


def test_help_teaches_the_flag():
    r = run_app("calibrate", "--help")
    assert r.exit_code == 0
    assert "--engine-fit" in r.stdout and "--max-requests" in r.stdout
    # The command's text (above the options table, whose cells wrap to the terminal's width) says what
    # is fitted, how long it takes and how to use the result.
    text = " ".join(r.stdout.split("Options")[0].split())
    for needle in ("capsim calibrate --engine-fit trtllm-bench.csv -o my-engines.toml", "compute efficiency",
                   "memory efficiency", "overhead per iteration", "about 2 s per row", "request_rate inf",
                   "profile: {kind: auto, engine: NAME, engine_profiles: my-engines.toml}"):
        assert needle in text, needle
