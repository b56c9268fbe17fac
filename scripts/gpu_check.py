#!/usr/bin/env python3
"""GPU check: a short real distillation run on an NVIDIA GPU, metered by distillmeter and
checked against an independent reader of the NVML energy counter.

    PYTHONPATH=src python scripts/gpu_check.py            # results under $OUT or ./gpu_check_out
    python scripts/gpu_check.py --cpu-smoke --out /tmp/x  # tiny models on CPU (CI), no NVML

Needs only torch, transformers, nvidia-ml-py and distillmeter's core dependencies (pydantic,
pyyaml, psutil, numpy; safetensors and tokenizers come with transformers); it runs from the
repository without installing distillmeter, and says what is missing otherwise.

What it does: randomly initialised Llama-shaped models (teacher ~1.1B, student ~95M, bf16,
vocabulary 32k) go through distillmeter's own stages, each inside ``meter.stage``:
``setup.load`` (build models), ``teacher.logits`` (top-k cache over 2048 x 256-token
sequences, ``logit_cache.write_cache``), ``teacher.generate`` (batched greedy decoding of
256 prompts, ``TransformersBackend``), ``student.train`` (cached-logit KD, the shared
``training.train`` loop under bf16 autocast) and ``eval.student`` (``evaluation.evaluate``).
The run is accounted into report.json. Meanwhile a separate process (spawned; see
gpu_check_reader.py) polls the GPU's energy counter with its own timestamps. Checks:
(a) each stage's GPU energy in report.json against the reader's, within 1% for stages of
2 s or more; (b) each stage's GPU energy per token against its floor: inference max(2 x
params x J/FLOP, weight bytes / batch x J/byte), training 6 x params x J/FLOP (J/FLOP and
J/byte from distillmeter's floors table; H100: 1.03 pJ/FLOP, 129 pJ/byte).
Writes gpu_check.json, gpu_check.txt, reader.csv and the run directory (run/). Exit status:
0 pass, 1 a check failed, 2 the machine cannot run the check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NEEDED = {"torch": "torch", "transformers": "transformers", "safetensors": "safetensors",
          "tokenizers": "tokenizers", "pydantic": "pydantic", "yaml": "pyyaml",
          "psutil": "psutil", "numpy": "numpy"}


@dataclass(frozen=True)
class Plan:
    """Sizes of the check's run."""

    vocab: int = 32000
    teacher: tuple[int, int, int, int] = (2048, 20, 16, 5632)  # d_model, layers, heads, d_ff
    student: tuple[int, int, int, int] = (768, 10, 12, 2048)
    max_len: int = 512
    n_seq: int = 2048
    seq_len: int = 256
    prompt_len: int = 64
    logits_batch: int = 32
    top_k: int = 64
    n_prompts: int = 256
    gen_batch: int = 128
    max_new_tokens: int = 128
    train_batch: int = 32
    train_tokens: int = 1 << 20
    n_test: int = 512
    eval_batch: int = 128
    eval_new_tokens: int = 48
    idle_seconds: float = 3.0


SMOKE = Plan(vocab=300, teacher=(64, 2, 4, 128), student=(32, 1, 2, 64), max_len=64,
             n_seq=16, seq_len=24, prompt_len=8, logits_batch=8, top_k=8, n_prompts=4,
             gen_batch=4, max_new_tokens=4, train_batch=8, train_tokens=300, n_test=4,
             eval_batch=4, eval_new_tokens=4, idle_seconds=0.0)


def missing(gpu: bool) -> list[str]:
    """pip names of the packages this check needs and cannot import."""
    need = dict(NEEDED, **({"pynvml": "nvidia-ml-py"} if gpu else {}))
    return [pip for mod, pip in need.items() if importlib.util.find_spec(mod) is None]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def alphabet(task_alphabet: str, size: int) -> str:
    """The task's characters, then printable CJK/Hangul filler up to ``size`` tokens (a
    real vocabulary's width, so the LM head costs what it does in real models)."""
    chars = list(dict.fromkeys(task_alphabet))
    cp = 0x3400
    while len(chars) < size - 4:  # 4 special tokens
        c = chr(cp)
        if c.isprintable() and not c.isspace():
            chars.append(c)
        cp += 1
    return "".join(chars)


def spec_of(dims: tuple[int, int, int, int], max_len: int):
    from distillmeter.models import TinyModelSpec

    d, layers, heads, ff = dims
    return TinyModelSpec(d_model=d, n_layers=layers, n_heads=heads, d_ff=ff, max_len=max_len)


def params_of(spec, tok) -> int:
    """Parameter count without allocating: the model built on the meta device."""
    import torch
    from transformers import LlamaForCausalLM

    from distillmeter.models import count_params, llama_config

    try:
        with torch.device("meta"):
            return count_params(LlamaForCausalLM(llama_config(spec, tok)))
    except Exception:  # count by hand: embeddings (tied head), layers, final norm
        d, ff = spec.d_model, spec.d_ff
        head = 1 if spec.tie_embeddings else 2
        return head * len(tok) * d + spec.n_layers * (4 * d * d + 3 * d * ff + 2 * d) + d


def build(spec, tok, seed: int, device, dtype):
    """distillmeter's builder, initialised directly on the GPU (1B parameters initialise in
    seconds there, minutes on a CPU)."""
    import torch

    from distillmeter.models import build_llama

    model = None
    if device.type == "cuda":
        try:
            with torch.device(device):
                model = build_llama(spec, tok, seed=seed)
        except Exception as exc:  # an older transformers may not build under a device context
            say(f"building on {device} failed ({exc}); building on the CPU instead (slower)")
    if model is None:
        model = build_llama(spec, tok, seed=seed)
    return model.to(device=device, dtype=dtype).eval()


def random_sequences(plan: Plan, tok, seed: int):
    """``n_seq`` training sequences of ``seq_len`` tokens: BOS, a prompt, a target, EOS."""
    import torch

    from distillmeter.pipelines.data import Sequences

    g = torch.Generator().manual_seed(seed)
    body = torch.randint(4, len(tok), (plan.n_seq, plan.seq_len - 2), generator=g).tolist()
    ids = [[tok.bos_token_id, *row, tok.eos_token_id] for row in body]
    return Sequences(ids=ids, prompt_lens=[plan.prompt_len] * plan.n_seq)


def task_and_tokenizer(plan: Plan):
    """The arithmetic task's prompts and test set, and a 32k-token char tokenizer."""
    from distillmeter.models import build_char_tokenizer
    from distillmeter.tasks import load_task

    data = load_task("arithmetic", seed=0, n_labelled=1, n_pool=plan.n_prompts,
                     n_test=plan.n_test, n_teacher=0)
    return data, build_char_tokenizer(alphabet(data.task.alphabet, plan.vocab))


def run_pipeline(plan: Plan, meter, device, work: Path, data, tok) -> dict:
    """The metered stages. Returns what the efficiency check needs to know about them."""
    import contextlib

    import torch

    from distillmeter.engines.generation import TransformersBackend
    from distillmeter.pipelines.config import EvalConfig, MethodConfig, TrainingConfig
    from distillmeter.pipelines.data import batches
    from distillmeter.pipelines.evaluation import evaluate
    from distillmeter.pipelines.logit_cache import LogitCache, write_cache
    from distillmeter.pipelines.training import CachedKD, train

    cuda = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else \
        contextlib.nullcontext
    info: dict = {}
    with meter.stage("setup.load"):
        dtype = torch.bfloat16 if cuda else torch.float32
        teacher = build(spec_of(plan.teacher, plan.max_len), tok, 0, device, dtype)
        student = build(spec_of(plan.student, plan.max_len), tok, 1, device, torch.float32)
        seqs = random_sequences(plan, tok, seed=0)
    say(f"setup.load done: vocab {len(tok)}")

    with meter.stage("teacher.logits") as st:
        manifest = write_cache(work / "logits", teacher, seqs, key_hash="gpu-check",
                               top_k=plan.top_k, vocab_size=len(tok), pad_id=tok.pad_token_id,
                               dtype="float16", batch_size=plan.logits_batch,
                               shard_sequences=512, device=device,
                               on_batch=lambda n_tok, n_seq: st.add(n_tok, n_seq))
    info["teacher.logits"] = {"batch_tokens": plan.logits_batch * plan.seq_len,
                              "cache_bytes_per_token": manifest.info["bytes_per_token"]}
    say(f"teacher.logits done: {st.tokens} tokens in {st.seconds:.1f} s")

    prompt_tokens = []
    with meter.stage("teacher.generate") as st:
        def counted(batch):  # J per generated token: new tokens (EOS included) only
            st.add(tokens=sum(g.new_tokens for g in batch), samples=len(batch))
            prompt_tokens.append(sum(g.prompt_tokens for g in batch))

        TransformersBackend(teacher, tok, str(device)).generate(
            list(data.pool), max_new_tokens=plan.max_new_tokens, temperature=0.0,
            batch_size=plan.gen_batch, on_batch=counted)
    info["teacher.generate"] = {"batch_tokens": plan.gen_batch,
                                "prompt_tokens": sum(prompt_tokens)}
    say(f"teacher.generate done: {st.tokens} new tokens in {st.seconds:.1f} s")
    del teacher
    if cuda:
        torch.cuda.empty_cache()

    with meter.stage("student.train") as st:
        cache = LogitCache(work / "logits", expect_sequences=seqs)
        method = MethodConfig(name="kd", data=["labelled"], loss="kd")
        cfg = TrainingConfig(lr=1e-3, batch_size=plan.train_batch,
                             token_budget=plan.train_tokens)
        with autocast():
            res = train(student, batches(seqs, plan.train_batch, tok.pad_token_id, seed=0),
                        CachedKD(method, cache, vocab_size=len(tok)), cfg, device=device,
                        on_step=lambda n_tok, n_seq, loss: st.add(n_tok, n_seq))
    info["student.train"] = {"steps": res.steps, "final_loss": res.final_loss,
                             "batch_tokens": plan.train_batch * plan.seq_len}
    say(f"student.train done: {res.steps} steps, {st.tokens} tokens in {st.seconds:.1f} s")

    with meter.stage("eval.student") as st:
        with autocast():
            ev = evaluate(student, tok, data.task, list(data.test),
                          EvalConfig(batch_size=plan.eval_batch,
                                     max_new_tokens=plan.eval_new_tokens),
                          device=str(device), max_len=plan.max_len)
        st.add(tokens=ev.tokens, samples=ev.n)
    meter.record_quality("exact_match", ev.exact_match, n=ev.n, details={"loss": ev.loss})
    info["eval.student"] = {"batch_tokens": plan.eval_batch}
    say(f"eval.student done: {ev.n} examples in {st.seconds:.1f} s")
    return info


def nvml_index(device) -> int:
    """The NVML index of a CUDA device (by UUID; else CUDA_VISIBLE_DEVICES' mapping)."""
    import pynvml
    import torch

    from distillmeter.energy import visible_gpu_indices

    pynvml.nvmlInit()
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is not None:
        text = str(uuid) if str(uuid).startswith("GPU-") else f"GPU-{uuid}"
        try:
            return int(pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByUUID(text)))
        except pynvml.NVMLError:
            pass
    indices, _ = visible_gpu_indices(pynvml, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return indices[device.index or 0]


def start_reader(index: int, out: Path, lead: float = 0.3):
    """The independent reader in a spawned process; returns (process, stop event) once it
    has been reading for ``lead`` seconds (the run's first boundary needs readings before
    it to be bracketed)."""
    import multiprocessing as mp

    import gpu_check_lib as lib

    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=lib.reader_main, daemon=True,
                       args=([index], str(out / "reader.csv"), stop, ready, 0.001))
    proc.start()
    if not ready.wait(120):
        raise RuntimeError("the independent NVML reader did not start within 120 s")
    time.sleep(lead)
    return proc, stop


def stop_reader(proc, stop, linger: float = 0.5) -> None:
    """Stop the reader, after ``linger`` seconds more of readings: the last boundary needs
    readings after it to be bracketed."""
    time.sleep(linger)
    stop.set()
    proc.join(60)


def meter_origin(meter) -> float:
    """The ``time.monotonic()`` value of the meter's t = 0 (its ledger's and trace's clock)."""
    a = time.monotonic()
    t = meter.now()
    return (a + time.monotonic()) / 2 - t


def run_check(plan: Plan, device, out: Path, *, smoke: bool, tmp: Path) -> int:
    """Meter the pipeline, account it, run both checks, write the results."""
    import shutil

    import gpu_check_lib as lib
    import torch
    import transformers

    from distillmeter.accounting import account, write_report
    from distillmeter.analysis.efficiency import load_floors, match_floor
    from distillmeter.analysis.runs import cpu_name, gpu_names
    from distillmeter.energy import EnergyMeter

    started = time.time()
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    data, tok = task_and_tokenizer(plan)
    params = {"teacher": params_of(spec_of(plan.teacher, plan.max_len), tok),
              "student": params_of(spec_of(plan.student, plan.max_len), tok)}
    index = None if smoke else nvml_index(device)
    proc = stop = None
    if index is not None:
        (out / "reader.csv.error").unlink(missing_ok=True)
        proc, stop = start_reader(index, out)
        say(f"independent reader polling gpu:{index} (pid {proc.pid})")
    # the GPU doing the work (other GPUs of the machine would add their idle draw), host too
    devices = "auto" if index is None else [f"gpu:{index}", "cpu", "dram"]
    meter = EnergyMeter(run_dir, devices=devices, sample_hz=20.0, idle_seconds=plan.idle_seconds,
                        method="gpu-check", seed=0, task="arithmetic",
                        labels={"teacher_params": params["teacher"],
                                "student_params": params["student"],
                                "teacher_batch_size": plan.gen_batch},
                        config={"gpu_check": asdict(plan)})
    error, info, origin = None, {}, 0.0
    try:
        with meter:
            origin = meter_origin(meter)
            info = run_pipeline(plan, meter, device, tmp, data, tok)
    except Exception:  # still account what ran and say what broke (OOM, a driver error...)
        error = traceback.format_exc()
        say("the pipeline failed:\n" + error)
    finally:
        if proc is not None:
            stop_reader(proc, stop)
        shutil.rmtree(tmp, ignore_errors=True)
    report = account(run_dir)
    write_report(run_dir, report)
    say("accounted: run/report.json")
    gpus = gpu_names(report.hardware)
    model = gpus[0] if not smoke and gpus else (torch.cuda.get_device_name(device)
                                                 if not smoke else cpu_name(report.hardware))
    floor = match_floor(model, load_floors(), "cpu" if smoke else "gpu")
    batches = {k: v["batch_tokens"] for k, v in info.items() if "batch_tokens" in v}
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "mode": "cpu-smoke" if smoke else "gpu", "device": model or str(device),
               "torch": torch.__version__, "transformers": transformers.__version__,
               "dtype": "float32 (cpu smoke)" if smoke else "bf16 (student: bf16 autocast)",
               "params": params, "plan": asdict(plan), "stage_info": info,
               "run_id": report.run_id, "estimated": report.estimated, "error": error,
               "stages": lib.stage_rows(report), "floor": floor,
               "efficiency": lib.efficiency(report.model_dump(), params, batches, floor,
                                            gpu=not smoke)}
    if index is None:
        results["reader_check"] = {"skipped": "no NVML in --cpu-smoke mode"}
        ok = all(s["status"] == "ok" for s in results["stages"]) and all(
            s["energy_j"] > 0 for s in results["stages"])
    else:
        results["reader_check"] = lib.reader_check(report, run_dir, out, index, origin)
        ok = results["reader_check"]["ok"] and all(s["status"] == "ok"
                                                   for s in results["stages"])
    ok = ok and error is None
    results["status"] = "pass" if ok else "fail"
    results["elapsed_s"] = time.time() - started
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = lib.summary(results)
    (out / "gpu_check.txt").write_text(text)
    print(text, flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output folder (default: $OUT, else ./gpu_check_out)")
    ap.add_argument("--cpu-smoke", "--dry-run", dest="smoke", action="store_true",
                    help="tiny models on CPU, no NVML: checks that the script works")
    ap.add_argument("--device", default="cuda:0", help="the GPU to use (default cuda:0)")
    args = ap.parse_args(argv)
    out = Path(args.out or os.environ.get("OUT") or "gpu_check_out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    lacking = missing(gpu=not args.smoke)
    if lacking:
        print("gpu_check: cannot run, these packages are missing: " + ", ".join(lacking)
              + "\n  install them with: pip install " + " ".join(lacking), file=sys.stderr)
        (out / "gpu_check.json").write_text(json.dumps({"status": "missing_dependencies",
                                                         "missing": lacking}, indent=2))
        return 2
    if importlib.util.find_spec("distillmeter") is None:
        sys.path.insert(0, str(REPO / "src"))  # run from the repository, not installed
    sys.path.insert(0, str(HERE))
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA GPU here (use --cpu-smoke to check the script "
              "on a CPU)", file=sys.stderr)
        return 2
    plan = SMOKE if args.smoke else Plan()
    device = torch.device("cpu" if args.smoke else args.device)
    if args.smoke:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    say(f"gpu_check: {'cpu smoke' if args.smoke else device}; results in {out}")
    return run_check(plan, device, out, smoke=args.smoke,
                     tmp=Path(tempfile.mkdtemp(prefix="gpu_check_")))


if __name__ == "__main__":
    sys.exit(main())
