"""Scenario files as a user writes them: files they name are read beside them wherever capsim
runs, and what YAML would silently accept (a key given twice) or cannot read (bytes that are
not UTF-8) is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import sim
from tests.helpers import run_app

_WORKLOAD = ("arrival: {rate_per_s: 2.0}\nnum_requests: 3\n"
             "classes: [{name: x, prompt_tokens: {dist: fixed, value: 5}, output_tokens: {dist: fixed, value: 5}}]\n")
_PROFILE = "profile: {kind: explicit, fixed_s: 0.01, kv_capacity_tokens: 4096}\n"


def test_a_workload_file_is_read_beside_the_scenario_from_any_directory(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.yaml").write_text(_WORKLOAD)
    (tmp_path / "sub" / "s.yaml").write_text(_PROFILE + "workload: w.yaml\n")
    monkeypatch.chdir(tmp_path)  # not the scenario's folder: the CLI used to look for ./w.yaml
    result = run_app("run", "sub/s.yaml", "--no-write", "-q")
    assert result.exit_code == 0, result.output
    assert sim.load_scenario("sub/s.yaml").workload.num_requests == 3


def test_a_trace_path_is_read_beside_the_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.csv").write_text("t,p,o\n0,10,5\n1,20,5\n2,30,4\n3,10,3\n")
    (tmp_path / "sub" / "s.yaml").write_text(  # KV for a whole context: the trace's lengths are read later
        _PROFILE.replace("4096", "200000") + "workload:\n  arrival: {process: trace, path: t.csv, format: csv, "
        "columns: {arrival_s: t, prompt_tokens: p, output_tokens: o}}\n  num_requests: 3\n"
        "  classes: [{name: x}]\n")
    monkeypatch.chdir(tmp_path)
    result = run_app("run", "sub/s.yaml", "--no-write", "-q")
    assert result.exit_code == 0, result.output
    assert sim.load_scenario("sub/s.yaml").workload.arrival.path == str(Path("sub") / "t.csv")


def test_a_key_given_twice_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(_PROFILE + "workload:\n  arrival: {rate_per_s: 2.0}\n  num_requests: 3\n  num_requests: 30\n")
    with pytest.raises(sim.ScenarioError, match=r"not valid YAML at line 5, column 3: key 'num_requests' is given "
                                                r"twice \(first at line 4\): each key may appear once$"):
        sim.load_scenario(path)


def test_bytes_that_are_not_utf8_are_refused_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(sim.ScenarioError, match=r"not a text file in UTF-8 \(byte 9 is 0xe9\)"):
        sim.load_scenario(path)


def test_a_yaml_exponent_read_as_text_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(_PROFILE + "workload:\n  arrival: {rate_per_s: 2.0}\n  duration_s: 1e3\n"
                    "  classes: [{name: x, prompt_tokens: {dist: fixed, value: 5}, "
                    "output_tokens: {dist: fixed, value: 5}}]\n")
    with pytest.raises(sim.ScenarioError, match=r"workload\.duration_s = '1e3': must be a valid number \(it is "
                                                r"text: .*write 1\.0e\+12"):
        sim.load_scenario(path)


@pytest.mark.parametrize("name", ["\x00", "a\x00.yaml"])
def test_a_workload_file_name_with_a_nul_is_refused(name: str) -> None:
    # Found by the fuzz (tests/test_scenario_fuzz.py): pathlib raised a bare ValueError.
    with pytest.raises(sim.ScenarioError, match=r"not a valid file name \(it holds a NUL character\)"):
        sim.load_scenario({"workload": name})
