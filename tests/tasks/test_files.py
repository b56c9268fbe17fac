"""Task data from local files: JSONL, Parquet and saved datasets read alike; field names
configurable; chat templates applied (one BOS); splits disjoint; the GSM8K-style verifier;
every user mistake named with its file and line."""

from __future__ import annotations

import json

import pytest

import real_pair
from distillmeter.errors import UserError
from distillmeter.pipelines.config_file import parse_config
from distillmeter.tasks import Example, exact_match
from distillmeter.tasks.files import FileTask, load_file_task
from distillmeter.tasks.verifiers import exact_answer, numeric_final_answer


def _task_cfg(files: dict, **sizes):
    task = {"name": "sums", "n_labelled": 4, "n_pool": 6, "n_test": 3, **sizes,
            "files": {"fields": {"prompt": "question", "answer": "answer"},
                      "verifier": "numeric_final_answer", **files}}
    return parse_config({"task": task, "teacher": {"model": {"path": "t"}, "train": False},
                         "methods": [{"name": "b", "data": ["labelled"]}]}).task


@pytest.fixture
def jsonl(tmp_path):
    train = real_pair.write_jsonl(tmp_path / "train.jsonl", real_pair.math_records(20))
    test = real_pair.write_jsonl(tmp_path / "test.jsonl", real_pair.math_records(5, 50))
    return {"labelled": str(train), "pool": str(train), "test": str(test)}


@pytest.mark.parametrize("text,answer", [
    ("3+4=7\n#### 7", "7"), ("so #### 1,000.00 apples", "1000"), ("#### -3.50", "-3.5"),
    ("it costs $18.", "18"), ("first 3 then 12 and finally 42", "42"), ("no number", None),
    ("#### ", None), ("2 #### 5 then 9", "5"),
])
def test_numeric_final_answer(text, answer):
    assert numeric_final_answer(text) == answer


def test_the_verifier_compares_numbers_and_knows_pool_references():
    task = FileTask("t", "numeric_final_answer", {"q?": "x #### 12"}, "")
    assert task.check(Example("q?", "#### 12"), "so it is 12.00")
    assert task.check("q?", "blah #### 12") and not task.check("q?", "#### 13")
    assert not task.check("unknown?", "#### 12")  # no reference: never verified
    assert exact_match(task, [Example("a", "#### 3"), Example("b", "#### 4")],
                       ["3", "#### 5"]) == 0.5
    assert exact_answer("  a \n b ") == "a b" and exact_answer(" ") is None


def test_jsonl_splits_are_capped_disjoint_and_in_file_order(jsonl):
    data = load_file_task(_task_cfg(jsonl))
    assert [len(data.labelled), len(data.pool), len(data.test)] == [4, 6, 3]
    recs = real_pair.math_records(20)
    assert [e.prompt for e in data.labelled] == [r["question"] for r in recs[:4]]
    assert not set(data.pool) & {e.prompt for e in data.labelled}
    assert data.test[0].target == real_pair.math_records(1, 50)[0]["answer"]
    assert data.task.check(data.pool[0], "#### " + recs[4]["answer"].split()[-1])
    assert data.params["n_pool"] == 6 and data.params["chat_template"] is False


def test_a_test_prompt_is_dropped_from_the_other_splits(tmp_path, jsonl):
    leaked = real_pair.math_records(2, 50) + real_pair.math_records(10)
    path = real_pair.write_jsonl(tmp_path / "leaky.jsonl", leaked)
    data = load_file_task(_task_cfg({**jsonl, "labelled": str(path), "pool": str(path)}))
    test = {e.prompt for e in data.test}
    assert not test & {e.prompt for e in data.labelled} and not test & set(data.pool)
    assert data.params["dropped_as_in_test"]["labelled"] == 2


def test_shuffle_follows_the_task_seed(jsonl):
    a = load_file_task(_task_cfg({**jsonl, "shuffle": True}, seed=1))
    b = load_file_task(_task_cfg({**jsonl, "shuffle": True}, seed=1))
    c = load_file_task(_task_cfg({**jsonl, "shuffle": True}, seed=2))
    assert a.labelled == b.labelled and a.labelled != c.labelled


def test_parquet_and_a_saved_dataset_read_as_the_jsonl_does(tmp_path, jsonl):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    recs = real_pair.math_records(20)
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "train.parquet")
    from_jsonl = load_file_task(_task_cfg(jsonl))
    from_parquet = load_file_task(_task_cfg({**jsonl, "labelled": str(tmp_path / "train.parquet"),
                                             "pool": str(tmp_path / "train.parquet")}))
    assert from_parquet.labelled == from_jsonl.labelled and from_parquet.pool == from_jsonl.pool

    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(recs),
                          "other": datasets.Dataset.from_list(recs[:2])}).save_to_disk(saved)
    src = {"path": str(saved), "split": "train"}
    from_disk = load_file_task(_task_cfg({**jsonl, "labelled": src, "pool": src}))
    assert from_disk.labelled == from_jsonl.labelled and from_disk.pool == from_jsonl.pool
    with pytest.raises(UserError, match="splits train, other; set split"):
        load_file_task(_task_cfg({**jsonl, "labelled": str(saved)}))


def test_chat_template_is_applied_with_one_bos(jsonl):
    tok = real_pair.tokenizer(chat_template="<s>" + real_pair.CHAT_TEMPLATE)
    tok.add_special_tokens({"bos_token": "<s>"})
    data = load_file_task(_task_cfg({**jsonl, "system_prompt": "Be brief."}), tokenizer=tok)
    prompt = data.labelled[0].prompt
    first = real_pair.math_records(1)[0]["question"]
    assert prompt == f"[system]Be brief.\n[user]{first}\n[assistant]"
    ids = tok(prompt, add_special_tokens=True)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert data.params["chat_template"] is True
    off = load_file_task(_task_cfg({**jsonl, "chat_template": "off"}), tokenizer=tok)
    assert off.labelled[0].prompt == first
    with pytest.raises(UserError, match="has no chat template"):
        load_file_task(_task_cfg({**jsonl, "chat_template": "on"}),
                       tokenizer=real_pair.tokenizer(chat_template=None))


def test_messages_and_prompt_format(tmp_path, jsonl):
    chats = [{"id": i, "conv": [{"role": "user", "content": f"what is {i}+1?"},
                                {"role": "assistant", "content": f"#### {i + 1}"}]}
             for i in range(8)]
    path = real_pair.write_jsonl(tmp_path / "chat.jsonl", chats)
    files = {**jsonl, "labelled": {"path": str(path), "fields": {"messages": "conv"}}}
    data = load_file_task(_task_cfg(files), tokenizer=real_pair.tokenizer())
    assert data.labelled[0] == Example("[user]what is 0+1?\n[assistant]", "#### 1")
    with pytest.raises(UserError, match="need a tokenizer with a chat template"):
        load_file_task(_task_cfg(files), tokenizer=None)
    fmt = load_file_task(_task_cfg({**jsonl, "prompt_format": "Q: {prompt}\nA: "}))
    assert fmt.labelled[0].prompt.startswith("Q: Tom has") and fmt.labelled[0].prompt.endswith(
        "\nA: ")


def test_mistakes_name_the_file_line_and_key(tmp_path, jsonl):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n{oops\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2: not a JSON object"):
        load_file_task(_task_cfg({**jsonl, "labelled": str(bad)}))
    with pytest.raises(UserError, match=r"test.jsonl:1: no field 'prompt' .*fields.prompt"):
        cfg = _task_cfg(jsonl)
        cfg.files.fields.prompt = "prompt"
        load_file_task(cfg)
    noans = real_pair.write_jsonl(tmp_path / "noans.jsonl", [{"question": f"q{i}"}
                                                             for i in range(9)])
    with pytest.raises(UserError, match="generation.verify needs a reference answer"):
        load_file_task(_task_cfg({**jsonl, "pool": str(noans)}), verify_pool=True)
    with pytest.raises(UserError, match="the labelled set needs answers"):
        load_file_task(_task_cfg({**jsonl, "labelled": str(noans)}))
    with pytest.raises(UserError, match="cannot tell the format"):
        (tmp_path / "x.txt").write_text("")
        load_file_task(_task_cfg({**jsonl, "test": str(tmp_path / "x.txt")}))


def test_config_rules_for_files():
    with pytest.raises(UserError, match="task.files.teacher"):
        parse_config({"task": {"files": {"labelled": "a", "test": "b"}},
                      "methods": [{"name": "b", "data": ["labelled"]}]})
    with pytest.raises(UserError, match="task.files.pool"):
        parse_config({"task": {"files": {"labelled": "a", "test": "b"}},
                      "teacher": {"model": {"path": "t"}, "train": False}})
    with pytest.raises(UserError, match="params are for a built-in task"):
        parse_config({"task": {"params": {"width": 2},
                               "files": {"labelled": "a", "test": "b", "teacher": "c"}},
                      "methods": [{"name": "b", "data": ["labelled"]}]})
    with pytest.raises(UserError, match=r"prompt_format must contain \{prompt\}"):
        parse_config({"task": {"files": {"labelled": "a", "test": "b", "teacher": "c",
                                         "prompt_format": "Q:"}},
                      "methods": [{"name": "b", "data": ["labelled"]}]})
