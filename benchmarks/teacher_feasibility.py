"""Feasibility of the built-in default on a small CPU: can a tiny teacher learn the
arithmetic task to >= 90% exact match in about a minute, and does a several-times smaller
student trained on the small labelled set do clearly worse (leaving room for distillation)?

A throwaway plain cross-entropy loop (the real one lives in distillmeter.pipelines).

    .venv/bin/python benchmarks/teacher_feasibility.py            # the default specs
    .venv/bin/python benchmarks/teacher_feasibility.py --teacher-steps 300 --student-steps 150
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from distillmeter.engines.generation import TransformersBackend
from distillmeter.models import (
    DEFAULT_STUDENT_SPEC,
    DEFAULT_TEACHER_SPEC,
    TinyModelSpec,
    build_char_tokenizer,
    build_llama,
    count_params,
    encode_prompt_completion,
)
from distillmeter.pipelines.losses import kd_loss, topk_logprobs
from distillmeter.tasks import DEFAULT_TASK_PARAMS, Example, exact_match, load_task


def encode(tok, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and labels (-100 on prompt and padding: loss on the completion)."""
    rows = [encode_prompt_completion(tok, ex.prompt, ex.target) for ex in examples]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, (r, start) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, start : len(r)] = torch.tensor(r[start:])
    return ids, labels


def train(model, ids, labels, *, steps: int, batch: int, lr: float, seed: int,
          warmup: int = 20, probe=None, probe_every: int = 0, teacher=None,
          alpha: float = 0.5) -> dict:
    """AdamW, linear warmup then cosine decay to 10%; batches drawn with replacement.
    With ``teacher``: loss = alpha * CE + (1 - alpha) * forward KL to the (online) teacher
    on the completion positions."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    loss = torch.tensor(float("nan"))
    curve: list = []
    for step in range(steps):
        frac = step / max(steps - 1, 1)
        scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        rows = torch.randint(0, ids.shape[0], (batch,), generator=gen)
        out = model(input_ids=ids[rows], labels=labels[rows])
        loss = out.loss
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(input_ids=ids[rows]).logits
            mask = labels[rows][:, 1:] != -100  # logits at t predict token t + 1
            kd = kd_loss(out.logits[:, :-1], t_logits[:, :-1], mask=mask)
            loss = alpha * loss + (1 - alpha) * kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if probe is not None and probe_every and (step + 1) % probe_every == 0:
            curve.append((step + 1, round(time.process_time() - c0, 1), probe()))
            model.train()
    model.eval()
    # CPU seconds as well: with other work on the machine, wall time overstates what the
    # same loop takes on an idle one (with one thread, CPU time ~ idle wall time).
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "final_loss": float(loss.detach()),
            "steps": steps, "curve": curve}


def evaluate(model, tok, task, examples, *, batch: int = 256) -> tuple[float, float]:
    t0 = time.perf_counter()
    gens = TransformersBackend(model, tok).generate(
        [e.prompt for e in examples], max_new_tokens=16, batch_size=batch
    )
    return exact_match(task, examples, [g.completion for g in gens]), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--teacher", type=json.loads, default=None, help="TinyModelSpec JSON")
    ap.add_argument("--student", type=json.loads, default=None, help="TinyModelSpec JSON")
    ap.add_argument("--teacher-steps", type=int, default=300)
    ap.add_argument("--student-steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--teacher-lr", type=float, default=5e-3)
    ap.add_argument("--student-lr", type=float, default=1e-2)
    ap.add_argument("--n-labelled", type=int, default=DEFAULT_TASK_PARAMS["n_labelled"])
    ap.add_argument("--n-pool", type=int, default=DEFAULT_TASK_PARAMS["n_pool"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probe-every", type=int, default=0,
                    help="steps between exact-match probes (128 test examples)")
    ap.add_argument("--skip-students", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t_spec = TinyModelSpec(**args.teacher) if args.teacher else DEFAULT_TEACHER_SPEC
    s_spec = TinyModelSpec(**args.student) if args.student else DEFAULT_STUDENT_SPEC
    data = load_task(seed=args.seed, n_labelled=args.n_labelled, n_pool=args.n_pool)
    task = data.task
    tok = build_char_tokenizer(task.alphabet)
    out: dict = {"threads": args.threads, "teacher_spec": t_spec.model_dump(),
                 "student_spec": s_spec.model_dump()}

    teacher = build_llama(t_spec, tok, seed=args.seed)
    out["teacher_params"] = count_params(teacher)
    ids, labels = encode(tok, data.teacher_train)
    probe_set = data.test[:128]
    out["teacher_train"] = train(
        teacher, ids, labels, steps=args.teacher_steps, batch=args.batch, lr=args.teacher_lr,
        seed=args.seed, probe_every=args.probe_every,
        probe=lambda: evaluate(teacher, tok, task, probe_set)[0],
    )
    out["teacher_em"], out["teacher_eval_s"] = evaluate(teacher, tok, task, data.test)
    print(json.dumps(out, indent=1), flush=True)
    if args.skip_students:
        return

    t0 = time.perf_counter()
    gens = TransformersBackend(teacher, tok).generate(data.pool, max_new_tokens=16,
                                                      batch_size=256)
    out["generate_s"] = time.perf_counter() - t0
    out["generate_new_tokens"] = sum(g.new_tokens for g in gens)
    kept = [Example(g.prompt, g.completion) for g in gens if task.check(g.prompt, g.completion)]
    out["synthetic_kept"] = len(kept) / len(gens)

    # What a top-k logit cache over the synthetic sequences costs (k capped at the vocab).
    t0 = time.perf_counter()
    ids, _ = encode(tok, kept)
    with torch.inference_mode():
        for start in range(0, ids.shape[0], 256):
            topk_logprobs(teacher(input_ids=ids[start : start + 256]).logits, 64)
    out["logits_s"] = time.perf_counter() - t0
    out["logits_tokens"] = int((ids != tok.pad_token_id).sum())

    runs = [("sft_labelled", data.labelled, None), ("sft_synthetic", kept, None),
             ("kd_labelled", data.labelled, teacher), ("kd_synthetic", kept, teacher)]
    for name, examples, kd_teacher in runs:
        student = build_llama(s_spec, tok, seed=args.seed + 1)
        out["student_params"] = count_params(student)
        ids, labels = encode(tok, examples)
        res = train(
            student, ids, labels, steps=args.student_steps, batch=args.batch,
            lr=args.student_lr, seed=args.seed + 1, probe_every=args.probe_every,
            probe=lambda s=student: evaluate(s, tok, task, probe_set)[0], teacher=kd_teacher,
        )
        res["em"], res["eval_s"] = evaluate(student, tok, task, data.test)
        out[name] = res
        print(name, json.dumps(res), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
