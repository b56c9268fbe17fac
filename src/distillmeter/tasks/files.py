"""Task data from local files (``task.files``): JSONL, Parquet, or a dataset saved with
``datasets``' ``save_to_disk``; field names configurable; chat templates applied when the
tokenizer has one; a verifier for checkable answers.

    data = load_file_task(cfg.task, tokenizer=tok)      # a tasks.TaskData
    data.task.check(example, completion)                # the verifier
    exact_match(data.task, data.test, completions)      # tasks.exact_match works unchanged

Everything a user can get wrong (a missing file, a missing field, a bad line) is a
UserError naming the file, the line or record, and the config key to change.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from distillmeter.errors import UserError
from distillmeter.paths import resolve_path
from distillmeter.tasks.chat import render_prompt, uses_chat_template
from distillmeter.tasks.config import DataSourceConfig, FieldsConfig, FilesConfig
from distillmeter.tasks.types import Example, RawRecord, TaskData
from distillmeter.tasks.verifiers import VERIFIERS


class FileTask:
    """A task whose examples come from files. ``check`` compares final answers with the
    verifier; given a prompt alone (the teacher's answers to the pool) it uses the
    reference answer recorded for that prompt, if the file had one."""

    def __init__(self, name: str, verifier: str, references: dict[str, str], alphabet: str):
        self.name = name
        self.verifier = verifier
        self.alphabet = alphabet
        self._final = VERIFIERS[verifier]
        self._refs = references

    def final_answer(self, completion: str) -> str | None:
        return self._final(completion)

    def reference(self, prompt: str) -> str | None:
        """The reference answer recorded for ``prompt`` (None: none in the files)."""
        return self._refs.get(prompt)

    def check(self, example_or_prompt: Example | str, completion: str) -> bool:
        if isinstance(example_or_prompt, Example):
            target = example_or_prompt.target
        else:
            target = self._refs.get(example_or_prompt)
            if target is None:
                return False
        want, got = self._final(target), self._final(completion)
        return want is not None and got == want


# ------------------------------------------------------------------------------ reading


def _format_of(src: DataSourceConfig, path: Path) -> str:
    if src.format != "auto":
        return src.format
    if path.is_dir():
        return "hf_disk"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise UserError(f"{path}: cannot tell the format from the name; set format: jsonl, "
                    "parquet or hf_disk on this data source")


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):  # a JSON array of records
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        return [(f"{path}[{i}]", r) for i, r in enumerate(rows)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{path}:{lineno}", json.loads(line)))
        except ValueError as exc:
            raise UserError(f"{path}:{lineno}: not a JSON object ({exc})") from None
    return out


def _read_parquet(path: Path) -> list[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path}: reading Parquet needs pyarrow: pip install "
                        "'distillmeter[data]' (or pyarrow)") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several kinds for a bad file
        raise UserError(f"{path}: cannot read as Parquet ({exc})") from None
    return [(f"{path}[row {i}]", r) for i, r in enumerate(rows)]


def _read_saved_dataset(path: Path, split: str | None) -> list[tuple[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"{path}: reading a saved dataset needs the datasets library: pip "
                        "install 'distillmeter[data]' (or datasets)") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in ds:
            raise UserError(f"{path}: a dataset with splits {', '.join(names)}; set split: "
                            "<one of them> on this data source")
        ds = ds[split]
    elif split is not None:
        raise UserError(f"{path}: a single dataset (no splits); remove split: {split}")
    return [(f"{path}[record {i}]", r) for i, r in enumerate(ds.to_list())]


def _text(row: dict, field: str, where: str, key: str, *, required: bool) -> str | None:
    if field not in row or row[field] is None:
        if not required:
            return None
        raise UserError(f"{where}: no field {field!r} (fields: {', '.join(map(str, row))}); "
                        f"set task.files.fields.{key} to the field holding it")
    value = row[field]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise UserError(f"{where}: field {field!r} should be text, not {type(value).__name__}")
    return value


def _messages(row: dict, field: str, where: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
    msgs = row.get(field)
    if not isinstance(msgs, list) or not msgs:
        raise UserError(f"{where}: field {field!r} should be a non-empty list of "
                        "{role, content} messages (task.files.fields.messages)")
    turns = []
    for m in msgs:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise UserError(f"{where}: each message needs text 'role' and 'content'")
        turns.append((m["role"], m["content"]))
    answer = None
    if turns[-1][0] == "assistant":
        answer = turns.pop()[1]
    if not turns:
        raise UserError(f"{where}: the messages hold no prompt before the assistant's answer")
    return tuple(turns), answer


def read_source(src: DataSourceConfig, fields: FieldsConfig, *, split_name: str,
                cache: dict | None = None) -> list[RawRecord]:
    """Every record of one data source, as (prompt, answer) pairs."""
    path = resolve_path(src.path)
    if not path.exists():
        raise UserError(f"task.files.{split_name}: {path} does not exist (relative paths "
                        f"are relative to {Path.cwd()}); see docs/real-models.md for fetching "
                        "data sets")
    fmt = _format_of(src, path)
    cache_key = (str(path.resolve()), fmt, src.split)
    if cache is not None and cache_key in cache:
        rows = cache[cache_key]
    else:
        try:
            if fmt == "jsonl":
                rows = _read_jsonl(path)
            elif fmt == "parquet":
                rows = _read_parquet(path)
            else:
                rows = _read_saved_dataset(path, src.split)
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read ({exc})") from None
        if cache is not None:
            cache[cache_key] = rows
    f = src.fields or fields
    out = []
    for where, row in rows:
        if not isinstance(row, dict):
            raise UserError(f"{where}: a record should be a JSON object, not "
                            f"{type(row).__name__}")
        if f.messages is not None:
            prompt, answer = _messages(row, f.messages, where)
        else:
            prompt = _text(row, f.prompt, where, "prompt", required=True)
            answer = _text(row, f.answer, where, "answer", required=False)
            if not prompt.strip():
                raise UserError(f"{where}: empty prompt")
        out.append(RawRecord(prompt, answer, where))
    return out


# ------------------------------------------------------------------------------ splits


def _take(records: list[RawRecord], n: int, exclude: set[str], rng: random.Random | None
          ) -> tuple[list[RawRecord], int]:
    """Up to ``n`` records with distinct prompts not in ``exclude``; and how many were
    dropped for being in ``exclude``."""
    pool = list(records)
    if rng is not None:
        rng.shuffle(pool)
    out, seen, dropped = [], set(), 0
    for r in pool:
        if len(out) == n:
            break
        if r.key in exclude:
            dropped += 1
            continue
        if r.key in seen:
            continue
        seen.add(r.key)
        out.append(r)
    return out, dropped


def load_file_task(task_cfg, *, tokenizer=None, verify_pool: bool = False) -> TaskData:
    """The task's splits from ``task_cfg.files`` (a ``config.TaskConfig``), prompts rendered
    for ``tokenizer`` (its chat template; None: plain text). ``verify_pool``: every pool
    prompt must come with an answer (the verifier filters the teacher's answers by it)."""
    files: FilesConfig = task_cfg.files
    cache: dict = {}
    rng = (lambda: random.Random(task_cfg.seed)) if files.shuffle else (lambda: None)

    def read(split: str) -> list[RawRecord]:
        src = getattr(files, split)
        return [] if src is None else read_source(src, files.fields, split_name=split,
                                                  cache=cache)

    test, _ = _take(read("test"), task_cfg.n_test, set(), rng())
    test_keys = {r.key for r in test}
    labelled, dropped_l = _take(read("labelled"), task_cfg.n_labelled, test_keys, rng())
    pool, dropped_p = _take(read("pool"), task_cfg.n_pool,
                            test_keys | {r.key for r in labelled}, rng())
    teacher, dropped_t = _take(read("teacher"), task_cfg.n_teacher, test_keys, rng())
    for split, recs in (("test", test), ("labelled", labelled)):
        if not recs:
            raise UserError(f"task.files.{split}: no usable records")
        missing = next((r for r in recs if r.answer is None), None)
        if missing is not None:
            raise UserError(f"{missing.where}: the {split} set needs answers (field "
                            f"{(files.fields.answer)!r}; task.files.fields.answer)")
    if verify_pool:
        missing = [r for r in pool if r.answer is None]
        if missing:
            raise UserError(f"{missing[0].where}: generation.verify needs a reference answer "
                            f"for every pool prompt ({len(missing)} of {len(pool)} have none); "
                            "give the pool an answer field or set generation.verify: false")

    templated = uses_chat_template(files, tokenizer)

    def examples(recs: list[RawRecord]) -> list[Example]:
        return [Example(render_prompt(r, files, tokenizer, templated), r.answer or "")
                for r in recs]

    ex_test, ex_labelled, ex_teacher = examples(test), examples(labelled), examples(teacher)
    pool_prompts = [render_prompt(r, files, tokenizer, templated) for r in pool]
    refs: dict[str, str] = {}
    for ex in (*ex_teacher, *ex_labelled, *ex_test):
        refs[ex.prompt] = ex.target
    for prompt, r in zip(pool_prompts, pool, strict=True):
        if r.answer is not None:
            refs[prompt] = r.answer
    texts = [ex.prompt + ex.target for ex in (*ex_test, *ex_labelled, *ex_teacher)]
    alphabet = "".join(sorted(set("".join(texts + pool_prompts))))
    task = FileTask(task_cfg.name, files.verifier, refs, alphabet)
    params = {"name": task_cfg.name, "seed": task_cfg.seed, "chat_template": templated,
              "n_labelled": len(ex_labelled), "n_pool": len(pool_prompts),
              "n_test": len(ex_test), "n_teacher": len(ex_teacher),
              "dropped_as_in_test": {"labelled": dropped_l, "teacher": dropped_t},
              "dropped_pool_overlap": dropped_p}
    return TaskData(task=task, labelled=ex_labelled, pool=pool_prompts, test=ex_test,
                    teacher_train=ex_teacher, params=params)
