"""Prompts as the models see them: a record's text (or chat messages) through the
tokenizer's chat template, when it has one and ``task.files.chat_template`` allows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from distillmeter.errors import UserError

if TYPE_CHECKING:
    from distillmeter.tasks.config import FilesConfig
    from distillmeter.tasks.types import RawRecord


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def uses_chat_template(files: FilesConfig, tokenizer) -> bool:
    """Whether prompts go through the tokenizer's chat template (``chat_template``)."""
    has = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    if files.chat_template == "on" and not has:
        raise UserError("task.files.chat_template: on, but the tokenizer has no chat template "
                        "(use auto or off)")
    return has and files.chat_template != "off"


def render_prompt(record: RawRecord, files: FilesConfig, tokenizer, templated: bool) -> str:
    """The prompt text the models see. With the chat template, a generation prompt; the
    template's leading BOS is dropped when the tokenizer adds BOS itself, so that encoding
    the text (with special tokens, as training and generation do) gives exactly one."""
    turns = ([("user", record.prompt)] if isinstance(record.prompt, str)
             else list(record.prompt))
    if isinstance(record.prompt, str) and files.prompt_format is not None:
        turns = [("user", files.prompt_format.replace("{prompt}", record.prompt))]
    if not templated:
        if not isinstance(record.prompt, str):
            raise UserError(f"{record.where}: chat messages need a tokenizer with a chat "
                            "template (task.files.chat_template), or prompt/answer fields")
        return turns[0][1]
    messages = [{"role": r, "content": c} for r, c in turns]
    if files.system_prompt is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": files.system_prompt})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        text = text[len(bos):]
    return text
