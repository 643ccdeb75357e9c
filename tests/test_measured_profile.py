"""Measured profiles without torch: the fit recovers known coefficients from noisy synthetic
step times and scores itself on held-out rows; profiles round-trip through their files; the
simulator finds them by configuration, prefers measured ones and records which it used."""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from calibration.profile import BatchShape
from calibration.fit import fit_step_model
from calibration.measured import COEFFICIENTS, ProfileRecord, find_profile, read_profile, seconds_of, write_profile

TRUE = {"t0": 2e-3, "c_head": 3e-4, "w": 4e-3, "c_lin": 5e-5, "c_tok": 1e-5, "c_seq": 2e-5, "c_pf": 3e-9, "c_dc": 2e-8}


def synthetic(noise: float, seed: int = 1, coef: dict[str, float] = TRUE) -> pa.Table:
    """A grid like the harness measures (two layer counts), timed by the formula times lognormal noise."""
    rows = []
    for layers in (2, 4):
        rows += [("prefill", layers, 1, c, s, 0) for c in (16, 32, 64, 128, 256, 512, 1024, 2048) for s in (0, 512, 2048)]
        rows += [("decode", layers, b, 0, 0, x) for b in (1, 2, 4, 8, 16, 32, 64) for x in (64, 512, 2048)]
    ph, lay, seqs, chunk, start, ctx = map(np.array, zip(*rows))
    pre = ph == "prefill"
    sec = seconds_of(coef, lay, np.where(pre, chunk, seqs), seqs, np.where(pre, chunk * (start + chunk / 2), 0),
                     np.where(pre, seqs * start, seqs * (ctx + 1)))  # a prefill reads its cached prefix
    sec = sec * np.exp(np.random.default_rng(seed).normal(0, noise, sec.size))
    return pa.table({"phase": ph.tolist(), "layers": lay, "sequences": seqs, "chunk": chunk, "start": start,
                     "context": ctx, "seconds": sec})


def test_fit_recovers_known_coefficients_from_noiseless_steps():
    r = fit_step_model(synthetic(0.0))
    for k in COEFFICIENTS:
        assert r.coefficients[k] == pytest.approx(TRUE[k], rel=0.02), k
    assert r.heldout_error["prefill"]["p90"] < 1e-3 and r.heldout_error["decode"]["p90"] < 1e-3


def test_heldout_error_reflects_the_noise_it_cannot_fit():
    """With 5% lognormal noise the held-out error must be about the noise (median |error| of a
    N(0, 0.05) residual is 0.034), neither near zero (it would be scoring its own training rows)
    nor far above (a bad fit)."""
    r = fit_step_model(synthetic(0.05))
    for phase in ("prefill", "decode"):
        e = r.heldout_error[phase]
        assert e["points"] >= 10
        assert 0.01 < e["median"] < 0.08, (phase, e)
    assert r.depth_error is not None and r.depth_error["median"] < 0.08


def test_too_few_points_is_one_line():
    with pytest.raises(ValueError, match=r"too few to fit"):
        fit_step_model(synthetic(0.0).slice(0, 5))


def _record(kind: str = "measured", coef: dict[str, float] = TRUE, tp: int = 1) -> ProfileRecord:
    return ProfileRecord(model="llama-3.1-8b", quantization="bf16", hardware="h100-sxm", tp=tp, kind=kind,
                         coefficients=coef, layers=32, validity={"tokens_max": 2048.0},
                         heldout_error={"decode": {"median": 0.01, "p90": 0.02, "max": 0.03, "points": 10}},
                         source="synthetic test profile")


def test_profile_files_round_trip(tmp_path):
    js = write_profile(tmp_path, _record(), synthetic(0.0))
    assert js.name == "llama-3.1-8b__bf16__h100-sxm__tp1.json" and js.with_suffix(".parquet").exists()
    assert read_profile(js) == _record()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "x"}))
    with pytest.raises(ValueError, match=r"bad\.json: not a capsim profile \(missing key"):
        read_profile(bad)


def test_find_prefers_measured_and_earlier_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_profile(a, _record("derived-from-measured"), synthetic(0.0))
    write_profile(b, _record("measured", {**TRUE, "t0": 9e-3}), synthetic(0.0))
    path, rec = find_profile("llama-3.1-8b", "bf16", "h100-sxm", 1, [a, b])
    assert rec.kind == "measured" and path.parent == b
    assert find_profile("llama-3.1-8b", "bf16", "h100-sxm", 2, [a, b]) is None


def _scenario(profile: dict) -> sim.Scenario:
    return sim.load_scenario({"profile": profile, "workload": {
        "arrival": {"rate_per_s": 5.0}, "num_requests": 100,
        "classes": [{"name": "c", "prompt_tokens": {"dist": "fixed", "value": 300},
                     "output_tokens": {"dist": "fixed", "value": 20}}]}})


def test_simulation_uses_and_records_a_measured_profile(tmp_path):
    write_profile(tmp_path, _record(), synthetic(0.0))
    s = _scenario({"kind": "measured", "path": str(tmp_path)})
    r = sim.simulate(s)
    prof = r.summary["profile"]
    assert prof["kind"] == "measured" and "synthetic test profile" in prof["source"]
    # Every iteration is priced by the formula: check one decode-only iteration exactly.
    it = r.iterations
    dec = np.flatnonzero((it.column("prefill_seqs").to_numpy() == 0) & (it.column("decode_seqs").to_numpy() > 0))
    assert dec.size
    assert (it.column("duration_s").to_numpy()[dec] > TRUE["t0"] + 32 * TRUE["w"]).all()


def test_auto_falls_back_to_the_roofline_and_finds_user_profiles(tmp_path):
    # Nothing ships for one L40S: the datasheet roofline.
    l40s = sim.load_scenario({**_scenario({"kind": "auto"}).to_dict(), "hardware": "l40s"})
    assert sim.simulate(l40s).summary["profile"]["kind"] == "derived"
    # A shipped profile (derived-from-measured for 8B bf16 on H100) yields to a user's measured one.
    assert sim.simulate(_scenario({"kind": "auto"})).summary["profile"]["kind"] == "derived-from-measured"
    write_profile(tmp_path, _record(), synthetic(0.0))
    assert sim.simulate(_scenario({"kind": "auto", "dirs": [str(tmp_path)]})).summary["profile"]["kind"] == "measured"


def _poor(record: ProfileRecord) -> ProfileRecord:
    """``record`` labelled a poor fit, as ``capsim calibrate --from-benchmarks --keep-poor-fit`` labels one."""
    return dataclasses.replace(record, kind="derived-from-measured",
                               meta={"quality": "poor", "quality_note": "median error 89.5% over 6 measured values"})


def test_auto_skips_a_poor_profile_and_says_so(tmp_path):
    """A profile labelled poor is never what kind auto picks: it takes the next best (a shipped
    profile, or the datasheet roofline) and the run summary's provenance names the one skipped."""
    write_profile(tmp_path, _poor(_record()), synthetic(0.0))
    summary = sim.simulate(_scenario({"kind": "auto", "dirs": [str(tmp_path)]})).summary
    prof = summary["profile"]
    assert prof["kind"] == "derived-from-measured" and "Vidur" in prof["source"]  # the shipped profile
    # ... and the run warns (capsim run prints it as a warning line).
    assert [w for w in summary["warnings"] if w.startswith("profile ")] == [
        f"profile kind auto skipped {tmp_path / 'llama-3.1-8b__bf16__h100-sxm__tp1.json'}, labelled a poor fit "
        "(median error 89.5% over 6 measured values)"]
    assert prof["source"].startswith(f"warning: kind auto skipped {tmp_path / 'llama-3.1-8b__bf16__h100-sxm__tp1.json'}, "
                                     "labelled a poor fit (median error 89.5% over 6 measured values)")
    # Nothing ships for one L40S: the roofline, with the same warning.
    l40s = tmp_path / "l40s"
    write_profile(l40s, dataclasses.replace(_poor(_record()), hardware="l40s"), synthetic(0.0))
    s = sim.load_scenario({**_scenario({"kind": "auto", "dirs": [str(l40s)]}).to_dict(), "hardware": "l40s"})
    prof = sim.simulate(s).summary["profile"]
    assert prof["kind"] == "derived" and prof["source"].startswith("warning: kind auto skipped ")
    assert "roofline of" in prof["source"]
    # The profile a run uses survives pickling (process pools) with its warning.
    assert pickle.loads(pickle.dumps(s.build_profile())).provenance == s.build_profile().provenance
    # A good profile beside it is chosen without a warning; named explicitly, the poor one is used, with one.
    write_profile(tmp_path / "good", _record(), synthetic(0.0))
    prof = sim.simulate(_scenario({"kind": "auto", "dirs": [str(tmp_path), str(tmp_path / "good")]})).summary["profile"]
    assert prof["kind"] == "measured" and not prof["source"].startswith("warning")
    prof = sim.simulate(_scenario({"kind": "measured", "path": str(tmp_path)})).summary["profile"]
    assert prof["kind"] == "derived-from-measured"
    assert prof["source"].startswith("warning: a poor fit, kept with --keep-poor-fit (median error 89.5%")
    assert find_profile("llama-3.1-8b", "bf16", "h100-sxm", 1, [tmp_path], skip_poor=True) is None


def test_missing_measured_profile_is_one_line(tmp_path):
    write_profile(tmp_path, _record(tp=2), synthetic(0.0))
    with pytest.raises(sim.ScenarioError, match=r"no profile for llama-3.1-8b/bf16/h100-sxm/tp1 in .*there: "
                                                r"llama-3.1-8b/bf16/h100-sxm/tp2.*capsim calibrate"):
        _scenario({"kind": "measured", "path": str(tmp_path)})


def test_timing_spread_is_the_median_relative_p10_p90_spread() -> None:
    from calibration.calibrate import timing_spread

    t = pa.table({"seconds": [1.0, 2.0, 4.0], "p10_s": [0.9, 1.9, 3.0], "p90_s": [1.1, 2.3, 4.4]})
    # Spreads 20%, 20%, 35%: the median is 20%.
    assert timing_spread(t) == pytest.approx(0.20)


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(st.integers(1, 1 << 17), min_size=2, max_size=24, unique=True),
       ys=st.lists(st.floats(1e-7, 1e-1), min_size=24, max_size=24),
       points=st.lists(st.floats(0.0, float(1 << 17)), min_size=1, max_size=50))
def test_interp_at_is_numpys_interp_bit_for_bit(xs: list[int], ys: list[float], points: list[float]) -> None:
    """The engine's one-point interpolation of a linear-layer table (Python floats) gives what
    np.interp gives, table points and points between them alike."""
    from calibration.measured import interp_at

    tok = np.asarray(sorted(xs), np.float64)
    sec = np.cumsum(np.asarray(ys[:tok.size]))
    for x in points + tok.tolist():
        if x <= tok[-1]:
            assert interp_at(x, tok.tolist(), sec.tolist()) == float(np.interp(x, tok, sec))


def test_a_measured_profile_prices_the_same_after_pickling_and_copying() -> None:
    import copy
    import pickle

    p = sim.load_scenario({"model": "llama-3.1-8b", "quantization": "bf16", "hardware": "a100-80gb",
                           "profile": {"kind": "auto"},
                           "workload": {"preset": "azure-conv-2023", "num_requests": 1}}).build_profile()
    assert p._table is not None  # the shipped A100 profile has a linear-layer table
    b = BatchShape(np.array([700]), np.array([0]), np.arange(100, 140))
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p), copy.copy(p)):
        assert q.step(b) == p.step(b)
        assert q._table.lists == p._table.lists


def _coefficient_variants() -> list[tuple[dict[str, float], int, Any]]:
    """Every shipped profile's coefficients and table, and variants of one without each optional
    term (no table, no knee, no c_pf_self, a flat LM head)."""
    from calibration.measured import LinearTable, list_profiles, shipped_profile_dir

    out = []
    for _, rec in list_profiles([shipped_profile_dir()]):
        table = rec.linear_arrays()
        out.append((rec.coefficients, rec.layers, None if table is None else LinearTable(table)))
    c, layers, table = next(o for o in out if o[2] is not None)
    out += [(c, layers, None), ({k: v for k, v in c.items() if k != "knee"}, layers, None),
            ({k: v for k, v in c.items() if k != "c_pf_self"}, layers, table),
            ({**c, "head_w": 40 * c["c_head"]}, layers, table)]
    return out


VARIANTS = _coefficient_variants()


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(VARIANTS) - 1), chunk=st.integers(0, 9000), start=st.integers(0, 30000),
       n_dec=st.integers(0, 300), context=st.integers(0, 10**7))
def test_scalar_seconds_is_the_general_formula_bit_for_bit(which: int, chunk: int, start: int, n_dec: int,
                                                           context: int) -> None:
    """The engine's per-iteration pricing (coefficients bound once) gives the float the general
    formula gives, for every shipped profile and every optional term present or absent."""
    from calibration.measured import scalar_seconds

    c, layers, table = VARIANTS[which]
    n_pre = int(chunk > 0)
    tokens, seqs = float(chunk) + n_dec, float(n_pre + n_dec)
    pairs, own = float(chunk) * (float(start) + chunk / 2.0), float(chunk * chunk) / 2.0
    ctx = float(context) + float(start)
    want = seconds_of(c, layers, tokens, seqs, pairs, ctx, table, own)
    assert scalar_seconds(c, layers, table)(tokens, seqs, pairs, ctx, own) == float(want)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.integers(1, 5000), max_size=3), n_dec=st.integers(0, 200), context=st.integers(0, 10**7),
       moe=st.booleans())
def test_a_measured_step_counts_the_rooflines_flops_and_bytes(chunks: list[int], n_dec: int, context: int,
                                                              moe: bool) -> None:
    """FLOPs and bytes without the roofline's seconds: the same floats as its full pricing."""
    data = {"model": "mixtral-8x7b", "hardware": "h100-sxm", "quantization": "fp8", "tp": 2} if moe else {}
    base = sim.load_scenario({**data, "workload": {"arrival": {"rate_per_s": 1.0}, "num_requests": 1,
                                                   "classes": [{"name": "c", "prompt_tokens": {"dist": "fixed", "value": 8},
                                                                "output_tokens": {"dist": "fixed", "value": 8}}]},
                              "profile": {"kind": "roofline"}}).build_profile()
    chunk = np.asarray(chunks, np.int64)
    start = (chunk * 7) % 1000
    from calibration.profile import prefill_sums

    tokens, starts, pairs = prefill_sums(chunk, start)
    _, flops, nbytes = base._priced(chunk.size, n_dec, tokens, pairs, starts, context)
    assert base._work(chunk.size, n_dec, tokens, pairs, starts, context) == (flops, nbytes)
