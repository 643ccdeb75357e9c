"""SLO targets: the text syntax, the scenario's own targets, and checking a summary against them."""

from __future__ import annotations

import pytest

from sim.analysis.slo import SLOTarget, check_classes, default_slos, meets, parse_slo
from tests.helpers import scenario


@pytest.mark.parametrize("text, expected", [
    ("ttft_p99=1s", SLOTarget("ttft", "p99", 1.0)),
    ("tpot_p99=60ms", SLOTarget("tpot", "p99", 0.06)),
    ("itl_p50=250us", SLOTarget("itl", "p50", 250e-6)),
    ("e2e_p90=20", SLOTarget("e2e", "p90", 20.0)),
    ("queue_mean=0.5", SLOTarget("queue", "mean", 0.5)),
    ("e2e_p95=1.5e1s", SLOTarget("e2e", "p95", 15.0)),
    ("chat:ttft_p95=500ms", SLOTarget("ttft", "p95", 0.5, "chat")),
    ("rag:v2:tpot_p99=40ms", SLOTarget("tpot", "p99", 0.04, "rag:v2")),  # a class name may hold ':'
    (" TTFT_P99 = 2 s ", SLOTarget("ttft", "p99", 2.0)),
])
def test_parse_slo_reads_metric_stat_limit_and_unit(text, expected):
    got = parse_slo(text)
    assert (got.metric, got.stat, got.cls) == (expected.metric, expected.stat, expected.cls)
    assert got.limit_s == pytest.approx(expected.limit_s, rel=1e-12)


@pytest.mark.parametrize("text, needle", [
    ("ttft=1s", "expected [CLASS:]METRIC_STAT=LIMIT"),
    ("ttft_p99", "expected [CLASS:]METRIC_STAT=LIMIT"),
    ("ttft_p99=", "expected [CLASS:]METRIC_STAT=LIMIT"),
    ("ttft_p99=1h", "expected [CLASS:]METRIC_STAT=LIMIT"),
    ("ttft_p99=fast", "expected [CLASS:]METRIC_STAT=LIMIT"),
    ("ttft_p99=1.2.3s", "not a number"),
    ("ttft_p99=-1s", "> 0"),
    ("ttft_p99=0", "> 0"),
    ("ttft_p99=1e999", "> 0"),
    ("latency_p99=1s", "unknown metric 'latency'; METRIC is one of ttft, tpot, itl, e2e, queue"),
    ("ttft_p98=1s", "unknown statistic 'p98'; STAT is one of mean, p50, p90, p95, p99"),
    (":ttft_p99=1s", "class name before ':' is empty"),
    ("chat:itl_p99=1ms", "per-class targets are on ttft, tpot, e2e"),
])
def test_parse_slo_refuses_bad_text_in_one_line_naming_it(text, needle):
    with pytest.raises(ValueError) as e:
        parse_slo(text)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"SLO {text!r}: ")
    assert needle in message


@pytest.mark.parametrize("text", ["ttft_p99=1s", "tpot_p99=60ms", "itl_p50=250us", "chat:e2e_p90=20s",
                                  "queue_mean=1.5ms"])
def test_a_target_prints_as_the_text_that_parses_back_to_it(text):
    t = parse_slo(text)
    assert str(t) == text
    assert parse_slo(str(t)) == t


def test_a_target_checks_its_own_fields():
    with pytest.raises(ValueError, match="SLO metric 'ttfb'"):
        SLOTarget("ttfb", "p99", 1.0)
    with pytest.raises(ValueError, match="SLO statistic 'max'"):
        SLOTarget("ttft", "max", 1.0)
    with pytest.raises(ValueError, match="SLO limit"):
        SLOTarget("ttft", "p99", float("nan"))


def _classes(*slos: dict) -> list[dict]:
    return [{"name": f"c{i}", "prompt_tokens": {"dist": "fixed", "value": 1},
             "output_tokens": {"dist": "fixed", "value": 1}, "slo": slo} for i, slo in enumerate(slos)]


def test_default_slos_are_p99_of_the_class_limits_overall_with_one_class():
    s = scenario(workload={"classes": _classes({"ttft_s": 1.0, "tpot_s": 0.05})})
    assert default_slos(s) == [SLOTarget("ttft", "p99", 1.0), SLOTarget("tpot", "p99", 0.05)]


def test_default_slos_are_per_class_with_several_classes():
    s = scenario(workload={"classes": _classes({"e2e_s": 30.0}, {}, {"ttft_s": 0.2})})
    assert default_slos(s) == [SLOTarget("e2e", "p99", 30.0, "c0"), SLOTarget("ttft", "p99", 0.2, "c2")]


def test_default_slos_are_empty_without_class_limits():
    assert default_slos(scenario()) == []


def test_check_classes_names_the_unknown_class():
    s = scenario(workload={"classes": _classes({}, {})})
    check_classes([parse_slo("c1:ttft_p99=1s")], s)
    with pytest.raises(ValueError, match="no class named 'chat' in the scenario; its classes: c0, c1"):
        check_classes([parse_slo("chat:ttft_p99=1s")], s)


def _stats(**values: float | None) -> dict:
    base = {"count": 10, "mean": 0.1, "p50": 0.1, "p90": 0.2, "p95": 0.25, "p99": 0.3}
    return {**base, **values}


def _summary(overloaded: bool = False, **metrics: dict) -> dict:
    latency = {m: metrics.get(m, _stats()) for m in ("ttft", "tpot", "itl", "e2e", "queue")}
    return {"load": {"overloaded": overloaded, "arrival_rate_per_s": 10.0, "departure_rate_per_s": 8.0},
            "latency_s": latency,
            "per_class": {"chat": {"ttft": _stats(p99=2.0), "tpot": _stats(), "e2e": _stats()}}}


def test_meets_when_every_statistic_is_at_or_below_its_limit():
    assert meets(_summary(), [parse_slo("ttft_p99=0.3"), parse_slo("queue_mean=100ms")]) == (True, [])


def test_meets_names_each_target_missed():
    ok, reasons = meets(_summary(tpot=_stats(p99=0.07)), [parse_slo("tpot_p99=60ms"), parse_slo("ttft_p90=1s"),
                                                          parse_slo("e2e_p50=50ms")])
    assert not ok
    assert reasons == ["tpot_p99 70ms > 60ms", "e2e_p50 100ms > 50ms"]


def test_a_missing_statistic_does_not_meet():
    ok, reasons = meets(_summary(ttft=_stats(count=0, mean=None, p50=None, p90=None, p95=None, p99=None)),
                        [parse_slo("ttft_p99=1s")])
    assert not ok and reasons == ["ttft_p99: no completed request measured"]


def test_an_overloaded_run_never_meets_even_with_good_numbers():
    ok, reasons = meets(_summary(overloaded=True), [parse_slo("ttft_p99=100s")])
    assert not ok and reasons[0].startswith("saturated: 10 requests/s arrived, 8/s left")
    assert meets(_summary(overloaded=True), []) == (False, reasons)
    assert meets(_summary(), []) == (True, [])


def test_a_class_target_reads_the_class_statistics():
    assert meets(_summary(), [parse_slo("ttft_p99=1s")])[0]
    ok, reasons = meets(_summary(), [parse_slo("chat:ttft_p99=1s")])
    assert not ok and reasons == ["chat:ttft_p99 2s > 1s"]
    ok, reasons = meets(_summary(), [parse_slo("rag:ttft_p99=1s")])
    assert not ok and reasons == ["rag:ttft_p99: no class 'rag' in the summary"]
