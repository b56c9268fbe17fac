"""Fuzzing the readers of a run directory with hypothesis: ledger text, trace text,
report.json, and whole run directories (ledger + trace + environment) through the real
accounting. The property everywhere: a valid result or a clear error of the documented
type (ProtocolError / UserError, with a message); never another exception.

Two kinds of input each: raw text (anything a disk or a crash can leave), and structured
files that follow the protocol's shape with hostile values (NaN, negatives, huge numbers,
wrong types, odd names, paths with NUL bytes), so the fuzzing gets past the first parse
and into the accounting."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import event, example, given
from hypothesis import strategies as st
from reliability_support import fuzz_settings

from distillmeter import protocol
from distillmeter.accounting import account, write_report
from distillmeter.errors import USER_ERRORS

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "h100-run-a"
FUZZ = fuzz_settings(300)


def _clear(exc: BaseException) -> None:
    event(f"error: {str(exc).split(':')[-1][:40]}")
    assert isinstance(exc, USER_ERRORS), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip(), "an error without a message"


# --------------------------------------------------------------------------- values
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e3, max_value=1e6),
    st.integers(min_value=-(2**70), max_value=2**70),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
devices = st.one_of(st.sampled_from(["gpu:0", "cpu:0", "dram:0", "gpu:1"]),
                    st.text(max_size=8))
stage_names = st.one_of(
    st.sampled_from(list(protocol.STANDARD_STAGES) + ["student.x.y", "other", "teacher."]),
    st.text(max_size=16))
times = st.one_of(st.floats(min_value=-5, max_value=60), numbers, st.text(max_size=4))
readings = st.dictionaries(devices, st.one_of(st.none(), numbers, st.text(max_size=4)),
                           max_size=4)
paths = st.one_of(st.sampled_from([".", "..", "../up", "/", "no/such", "a\x00b", "x" * 300]),
                  st.text(max_size=20))


@st.composite
def events(draw) -> dict:
    kind = draw(st.sampled_from(list(protocol.EVENTS) + ["bogus"]))
    ev: dict = {"event": kind, "t": draw(times)}
    if kind == "run_start":
        ev.update(run_id=draw(st.text(max_size=8)), wall_time="2026-11-27T00:00:00+00:00",
                  schema=protocol.SCHEMA, devices=draw(st.lists(devices, max_size=3)),
                  readings=draw(readings),
                  sources=draw(st.dictionaries(devices, st.sampled_from(
                      list(protocol.SOURCES) + ["?"]), max_size=3)),
                  upstream=draw(st.lists(st.fixed_dictionaries({
                      "run_id": st.text(max_size=6), "run_dir": paths,
                      "stages": st.lists(stage_names, max_size=3)}), max_size=2)),
                  seed=draw(st.one_of(st.none(), st.integers(-5, 5))))
    elif kind == "run_labels":
        ev.update(seed=draw(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3))),
                  labels=draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3)))
    elif kind == "idle_baseline":
        ev.update(device=draw(devices), power_w=draw(numbers), seconds=draw(numbers))
    elif kind in ("stage_start", "stage_end"):
        ev.update(stage=draw(stage_names), readings=draw(readings))
        if kind == "stage_end":
            ev.update(tokens=draw(st.integers(-10, 2**40)), samples=draw(st.integers(-1, 9)),
                      status=draw(st.sampled_from(["ok", "failed", "bad"])))
    elif kind == "quality":
        ev.update(metric="exact_match", value=draw(numbers), n=draw(st.integers(-1, 99)),
                  details=draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3)))
    elif kind == "warning":
        ev.update(message=draw(st.text(max_size=40)),
                  device=draw(st.one_of(st.none(), devices)),
                  stage=draw(st.one_of(st.none(), stage_names)))
    elif kind == "run_end":
        ev.update(readings=draw(readings), status=draw(st.sampled_from(["ok", "failed", ""])))
    if draw(st.integers(0, 9)) == 0:  # now and then a wrong type or a missing key
        key = draw(st.sampled_from(sorted(ev)))
        if draw(st.booleans()):
            del ev[key]
        else:
            ev[key] = draw(json_values)
    return ev


@st.composite
def ledger_lines(draw) -> list[str]:
    """A ledger: usually a sane run_start, then fuzzed events, JSON or junk lines, and
    sometimes a last line cut mid-write."""
    evs = draw(st.lists(events(), max_size=12))
    if draw(st.integers(0, 4)):
        evs.insert(0, {"event": "run_start", "t": 0.0, "run_id": "r", "schema": protocol.SCHEMA,
                       "wall_time": "2026-11-27T00:00:00+00:00",
                       "devices": ["gpu:0", "cpu:0"], "readings": {"gpu:0": 0.0, "cpu:0": 0.0},
                       "sources": {"gpu:0": "nvml_counter", "cpu:0": "estimate"}})
    lines = [json.dumps(e) + "\n" for e in evs]  # NaN and Infinity as Python writes them
    if draw(st.integers(0, 5)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=30)) + "\n")
    if lines and draw(st.booleans()):
        cut = draw(st.integers(0, len(lines[-1])))
        lines[-1] = lines[-1][:cut]
    return lines


@st.composite
def plausible_run(draw) -> tuple[list[str], str]:
    """A ledger and trace shaped like a real run (times and counters mostly increasing),
    with hostile values mixed in: NaN or missing readings, counters that reset, stages that
    never end or end twice, warnings naming stages and devices, a cut last line."""
    devs = draw(st.lists(st.sampled_from(["gpu:0", "gpu:1", "cpu:0", "dram:0"]),
                         min_size=1, max_size=3, unique=True))
    # counter increments: mostly forwards, now and then a reset
    value = st.one_of(st.floats(min_value=0, max_value=50), st.floats(min_value=0, max_value=50),
                      st.floats(min_value=0, max_value=50), st.floats(-1e4, 0))
    t, e = 0.0, {d: draw(st.floats(0, 1e6)) for d in devs}

    def step(dt_max: float = 2.0) -> tuple[float, dict]:
        nonlocal t
        t += draw(st.one_of(st.floats(0, dt_max), st.floats(-1, dt_max)))
        out = {}
        for d in devs:
            e[d] += draw(value) if draw(st.integers(0, 3)) else 0.0
            out[d] = draw(st.one_of(st.just(e[d]), st.just(e[d]), st.none(), numbers))
        return t, out

    t0, r0 = step()
    evs = [{"event": "run_start", "t": t0, "run_id": "r", "schema": protocol.SCHEMA,
            "wall_time": "2026-11-27T00:00:00+00:00", "devices": devs, "readings": r0,
            "sources": {d: draw(st.sampled_from(protocol.SOURCES)) for d in devs}}]
    for d in devs:
        if draw(st.booleans()):
            evs.append({"event": "idle_baseline", "t": t0, "device": d,
                        "power_w": draw(st.floats(0, 800)), "seconds": draw(numbers)})
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(stage_names)
        for kind in ("stage_start", "stage_end"):
            if kind == "stage_end" and not draw(st.integers(0, 6)):
                continue  # never ended
            tt, rr = step()
            ev = {"event": kind, "t": tt, "stage": name, "readings": rr}
            if kind == "stage_end":
                ev.update(tokens=draw(st.integers(0, 10**6)),
                          status=draw(st.sampled_from(["ok", "ok", "failed"])))
            evs.append(ev)
            for d in devs:
                for _ in range(draw(st.integers(0, 3))):
                    rows.append((tt + draw(st.floats(-0.5, 0.5)), d,
                                 draw(st.one_of(st.just(""), st.just(e[d]), numbers)),
                                 draw(st.one_of(st.just(""), st.floats(0, 800), numbers))))
            if draw(st.integers(0, 3)) == 0:
                evs.append({"event": "warning", "t": tt, "message": draw(st.sampled_from([
                    "the trace sampler died", "x possible contamination", "NVML error", ""])),
                    "device": draw(st.one_of(st.none(), st.sampled_from(devs))),
                    "stage": draw(st.one_of(st.none(), st.just(name), stage_names))})
    if draw(st.integers(0, 3)):
        tt, rr = step()
        evs.append({"event": "run_end", "t": tt, "readings": rr, "status": "ok"})
    lines = [json.dumps(ev) + "\n" for ev in evs]
    if draw(st.integers(0, 5)) == 0:
        lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
    trace = protocol.TRACE_HEADER + "".join(
        f"{tt},{d},{en},{p}\n" for tt, d, en, p in sorted(rows, key=lambda r: r[0])
        if math.isfinite(tt))
    return lines, trace


@st.composite
def trace_text(draw) -> str:
    header = draw(st.sampled_from([protocol.TRACE_HEADER, protocol.TRACE_HEADER,
                                   "t,device,energy_j\n", ""]))
    rows = draw(st.lists(st.tuples(times, devices, st.one_of(st.just(""), numbers),
                                   st.one_of(st.just(""), numbers)), max_size=30))
    body = "".join(f"{t},{d},{e},{p}\n" for t, d, e, p in rows)
    if draw(st.integers(0, 5)) == 0:
        body += draw(st.text(max_size=40))
    return header + body


# --------------------------------------------------------------------------- parsers
@FUZZ
@given(ledger_lines())
@example(["{\"event\": \"run_start\", \"t\": 0"])
@example(["[]\n", "{}\n"])
def test_ledger_lines_parse_or_fail_clearly(lines):
    try:
        ledger = protocol.parse_ledger_lines(lines, "fuzz/ledger.jsonl")
    except Exception as exc:  # noqa: BLE001 - the property is about the exception type
        _clear(exc)
        return
    assert ledger.events and ledger.events[0].event == "run_start"
    assert all(math.isfinite(e.t) for e in ledger.events)


@fuzz_settings(400)
@given(st.text(max_size=300))
def test_ledger_random_text(text):
    try:
        protocol.parse_ledger_lines(text.splitlines(keepends=True))
    except Exception as exc:  # noqa: BLE001
        _clear(exc)


@FUZZ
@given(st.one_of(trace_text(), st.text(max_size=300)))
@example("t,device,energy_j,power_w\n1,gpu:0,\"\n")
def test_trace_text_parses_or_fails_clearly(text):
    try:
        trace = protocol.parse_trace_lines(text.splitlines(keepends=True), "fuzz/trace.csv")
    except Exception as exc:  # noqa: BLE001
        _clear(exc)
        return
    for s in trace.devices.values():
        assert s["t"] == sorted(s["t"]) and all(math.isfinite(t) for t in s["t"])


# --------------------------------------------------------------------------- report.json
_VALID_REPORT = json.loads(account(FIXTURE).to_json())


@st.composite
def mutated_report(draw) -> object:
    """The fixture's report with a few values replaced, keys removed or junk added."""
    data = json.loads(json.dumps(_VALID_REPORT))
    for _ in range(draw(st.integers(1, 4))):
        node, key = data, None
        for _ in range(draw(st.integers(0, 3))):
            if isinstance(node, dict) and node:
                key = draw(st.sampled_from(sorted(node)))
            elif isinstance(node, list) and node:
                key = draw(st.integers(0, len(node) - 1))
            else:
                break
            if not isinstance(node[key], (dict, list)):
                break
            node = node[key]
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(json_values)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
    return data


@FUZZ
@given(st.one_of(mutated_report(), json_values))
def test_report_json_loads_or_fails_clearly(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        path.write_text(json.dumps(data))
        try:
            report = protocol.load_report(path)
        except Exception as exc:  # noqa: BLE001
            _clear(exc)
            return
        assert report.schema_ == protocol.REPORT_SCHEMA


@fuzz_settings(300)
@given(st.binary(max_size=200))
def test_report_json_bytes(blob):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "report.json").write_bytes(blob)
        try:
            protocol.load_report(tmp)
        except Exception as exc:  # noqa: BLE001
            _clear(exc)


# --------------------------------------------------------------------------- accounting
environments = st.one_of(st.none(), st.just(b"{"), st.just(b"[1]"), st.just(b'{"hardware": 3}'),
                         st.just(b'{"hardware": {"gpus": [1]}}'))


@fuzz_settings(200)
@given(plausible_run(), environments, st.sampled_from([0.0, 0.0, 0.05, -0.05]))
def test_accounting_a_plausible_but_hostile_run(run, env, shift):
    lines, trace = run
    _account_fuzzed(lines, trace, env, shift)


@fuzz_settings(200)
@given(ledger_lines(), st.one_of(st.none(), trace_text()), environments,
       st.sampled_from([0.0, 0.05, -0.05]))
@example(["{\"event\": \"run_start\", \"t\": 0, \"run_id\": \"r\", \"schema\": \"distillmeter/1\","
          " \"wall_time\": \"x\", \"devices\": [\"gpu:0\"], \"upstream\": [{\"run_id\": \"u\", "
          "\"run_dir\": \"a\\u0000b\", \"stages\": [\"teacher.logits\"]}]}\n"], None, None, 0.0)
def test_accounting_a_fuzzed_run_directory(lines, trace, env, shift):
    """A run directory with a fuzzed ledger, trace and environment.json: account() returns
    a report that validates and conserves energy, or a clear error."""
    _account_fuzzed(lines, trace, env, shift)


def _account_fuzzed(lines, trace, env, shift) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        (run / "ledger.jsonl").write_text("".join(lines), encoding="utf-8")
        if trace is not None:
            (run / "trace.csv").write_text(trace, encoding="utf-8")
        if env is not None:
            (run / "environment.json").write_bytes(env)
        try:
            report = account(run, boundary_shift=shift)
            write_report(run, report)
        except Exception as exc:  # noqa: BLE001
            _clear(exc)
            return
        event(f"accounted: {len(report.stages)} stages, status {report.status}")
        back = protocol.load_report(run)
        t = back.totals
        if all(math.isfinite(x) for x in (t.energy_j, t.stages_j, t.unattributed_j)):
            scale = max(1.0, abs(t.energy_j), abs(t.stages_j))
            assert abs(t.stages_j + t.unattributed_j - t.energy_j) <= 1e-9 * scale
