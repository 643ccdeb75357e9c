"""KV-cache precision applies twice in every profile kind with a memory model: to how many tokens
fit, and to the bytes each decode reads. fp8 KV holds twice the tokens and halves the KV-dependent
part of a decode step (the step at a long context minus the same batch at a short one); 16-bit KV
(auto, bf16, fp16) leaves every profile exactly as it was. A measured profile rescales its KV reads
from the precision its measurements held; an explicit profile, whose capacity and KV cost are the
scenario's own figures, refuses fp8 rather than ignore it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import sim
from calibration.measured import MeasuredProfile, ProfileRecord, coefficients_from_roofline, write_profile
from calibration.profile import BatchShape, Profile
from calibration.roofline import RooflineProfile

_WORKLOAD = {"arrival": {"rate_per_s": 1.0}, "num_requests": 1,
             "classes": [{"name": "chat", "prompt_tokens": {"dist": "fixed", "value": 100},
                          "output_tokens": {"dist": "fixed", "value": 10}}]}
# One of each profile kind with a memory model: the datasheet roofline (dense and MoE), a harness-style
# measured record (written by the fixture below), and the shipped operator-table profiles (a measured
# linear-layer table on the A100; the rounded roof of a derived fp8 profile on the H100).
KINDS: dict[str, dict[str, Any]] = {
    "roofline": {},
    "roofline-moe-tp2": {"model": "mixtral-8x7b", "quantization": "fp8", "tp": 2},
    "measured-harness": {"profile": {"kind": "measured", "path": "HARNESS"}},
    "operator-table": {"hardware": "a100-80gb", "profile": {"kind": "auto"}},
    "operator-roof-fp8": {"quantization": "fp8", "profile": {"kind": "auto"}},
}


@pytest.fixture(scope="module")
def harness_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Harness-style records for llama-3.1-8b bf16 on the H100 (coefficients shaped like the
    roofline's), measured with bf16, fp32 (a CPU run) and fp8 KV caches, one directory each."""
    base = sim.load_scenario({"workload": _WORKLOAD}).build_profile()
    assert isinstance(base, RooflineProfile)
    root = tmp_path_factory.mktemp("harness")
    for dtype in ("bfloat16", "float32", "float8_e4m3fn"):
        record = ProfileRecord(model="llama-3.1-8b", quantization="bf16", hardware="h100-sxm", tp=1, kind="measured",
                               coefficients=coefficients_from_roofline(base), layers=32, validity={},
                               heldout_error={}, source=f"test record, KV cache in {dtype}",
                               meta={"kv_cache_dtype": dtype})
        write_profile(root / dtype, record, pa.table({"seconds": [1.0]}))
    return root


def _built(kv: str, data: dict[str, Any], harness: Path, measured_kv: str = "bfloat16") -> tuple[Profile, int]:
    """The profile of a scenario with ``data`` at ``kv_cache_dtype = kv``, and its KV capacity."""
    data = json.loads(json.dumps(data).replace("HARNESS", str(harness / measured_kv)))
    s = sim.load_scenario({"workload": _WORKLOAD, **data, "kv_cache_dtype": kv})
    profile = s.build_profile()
    return profile, profile.kv_capacity_tokens(s.replica_spec)


def _kv_part(profile: Profile, batch: int = 32, short: int = 1024, long: int = 16384) -> float:
    """Seconds a decode step of ``batch`` sequences gains from ``short`` to ``long`` tokens of context:
    the part of it that reads the KV cache."""
    e = np.zeros(0, np.int64)

    def step(ctx: int) -> float:
        return profile.step(BatchShape(e, e, np.full(batch, ctx, np.int64))).seconds

    return step(long) - step(short)


@pytest.mark.parametrize("kind", KINDS)
def test_fp8_kv_halves_the_kv_read_and_doubles_the_capacity(kind: str, harness_dir: Path) -> None:
    sixteen, cap16 = _built("auto", KINDS[kind], harness_dir)
    eight, cap8 = _built("fp8", KINDS[kind], harness_dir)
    assert type(sixteen) is (RooflineProfile if kind.startswith("roofline") else MeasuredProfile)
    if kind.startswith("operator"):  # the shipped profiles fitted to operator timings
        assert "layers_from" in sixteen.record.meta  # type: ignore[attr-defined]
    assert _kv_part(sixteen) > 0
    assert _kv_part(eight) == pytest.approx(_kv_part(sixteen) / 2, rel=1e-9)
    assert cap16 > 0 and 2 * cap16 <= cap8 <= 2 * cap16 + 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kv", ["bf16", "fp16"])
def test_sixteen_bit_kv_named_outright_is_auto_bit_for_bit(kind: str, kv: str, harness_dir: Path) -> None:
    """Existing results keep their meaning: a 16-bit KV cache prices as "auto" does, to the last
    bit, and the provenance says nothing new."""
    auto, cap = _built("auto", KINDS[kind], harness_dir)
    named, named_cap = _built(kv, KINDS[kind], harness_dir)
    assert named_cap == cap and named.provenance == auto.provenance
    for ctx in (1, 700, 40000):
        batch = BatchShape(np.array([512]), np.array([ctx]), np.full(16, ctx, np.int64))
        assert named.step(batch) == auto.step(batch)


@pytest.mark.parametrize(("measured_kv", "kv", "scale"), [
    ("float32", "auto", 1.0), ("float32", "bf16", 0.5), ("float32", "fp8", 0.25),
    ("float8_e4m3fn", "auto", 1.0), ("float8_e4m3fn", "bf16", 2.0), ("float8_e4m3fn", "fp8", 1.0)])
def test_a_measured_profile_reads_kv_relative_to_the_precision_it_was_measured_at(
        measured_kv: str, kv: str, scale: float, harness_dir: Path) -> None:
    """A CPU harness run holds KV in fp32: at a named 16 bits each token reads half the bytes it
    measured; a record measured with an fp8 cache reads twice as many at 16 bits. Left at auto, KV
    reads are priced as measured (what the harness's real loop reads). The scale is on c_dc alone,
    and the provenance says so where it applies."""
    data = KINDS["measured-harness"]
    same, _ = _built(kv, data, harness_dir)  # the same coefficients, measured with a bf16 cache
    other, _ = _built(kv, data, harness_dir, measured_kv=measured_kv)
    assert isinstance(same, MeasuredProfile) and isinstance(other, MeasuredProfile)
    assert other.kv_read_scale == scale
    assert _kv_part(other) == pytest.approx(scale / same.kv_read_scale * _kv_part(same), rel=1e-9)
    e = np.zeros(0, np.int64)
    no_kv = BatchShape(np.array([256]), np.array([0]), e)  # a prefill with no cached prefix reads no KV
    assert other.step(no_kv) == same.step(no_kv)
    assert ("kv_read_scale" in other.provenance.assumptions) == (scale != 1.0)
    if scale != 1.0:
        assert f"KV reads (c_dc) x{scale:g}" in other.provenance.source


def test_a_prefill_reads_its_cached_prefix_at_the_kv_precision(harness_dir: Path) -> None:
    """A prefill chunk reads its cached prefix as a decode reads its context: with fp8 KV the time a
    longer prefix adds shrinks (a short chunk: few pairs per prefix token, so the read dominates), in
    the roofline and in measured profiles (whose attention pairs, 16-bit FLOPs, cost the same)."""
    for kind in ("roofline", "measured-harness", "operator-table"):
        added = []
        for kv in ("auto", "fp8"):
            profile, _ = _built(kv, KINDS[kind], harness_dir)
            at = [profile.step(BatchShape(np.array([8]), np.array([p]), np.zeros(0, np.int64))).seconds
                  for p in (4096, 12288)]
            added.append(at[1] - at[0])
        assert 0 < added[1] < added[0], kind


def test_an_unknown_measured_kv_precision_is_refused_in_one_line() -> None:
    text = json.dumps({"model": "llama-3.1-8b", "quantization": "bf16", "hardware": "h100-sxm", "tp": 1,
                       "kind": "measured", "coefficients": {c: 1e-6 for c in ("t0", "c_head", "w", "c_lin", "c_seq",
                                                                               "c_pf", "c_dc")},
                       "layers": 32, "validity": {}, "heldout_error": {}, "source": "test",
                       "meta": {"kv_cache_dtype": "int3"}})
    with pytest.raises(ValueError, match=r"^p\.json: not a capsim profile \(meta\.kv_cache_dtype = 'int3': unknown KV "
                                         r"precision; known: .*float32"):
        ProfileRecord.from_json(text, "p.json")


def test_an_explicit_profile_refuses_fp8_kv_and_takes_sixteen_bits_as_written() -> None:
    """Its kv_capacity_tokens and decode_attention_s are the scenario's figures: an fp8 cache would
    change neither, so it is refused, not silently ignored; 16-bit KV is what they were written for."""
    explicit = {"kind": "explicit", "fixed_s": 0.01, "decode_attention_s": 1e-8, "kv_capacity_tokens": 50000}
    with pytest.raises(sim.ScenarioError, match=r"kv_cache_dtype = 'fp8': an explicit profile takes its KV capacity "
                                                r"\(kv_capacity_tokens\) and KV read cost \(decode_attention_s\) as "
                                                r"written"):
        sim.load_scenario({"workload": _WORKLOAD, "profile": explicit, "kv_cache_dtype": "fp8"})
    auto = sim.load_scenario({"workload": _WORKLOAD, "profile": explicit})
    bf16 = sim.load_scenario({"workload": _WORKLOAD, "profile": explicit, "kv_cache_dtype": "bf16"})
    assert bf16.kv_capacity_tokens == auto.kv_capacity_tokens
    assert _kv_part(bf16.build_profile()) == _kv_part(auto.build_profile()) > 0
