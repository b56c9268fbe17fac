"""Secrets told by their surroundings rather than by their shape: a value under a
secret-sounding name (``password: x``, ``token=abc``, ``HF_MIRROR_PW``), a credential in an
HTTP header (``Authorization: Bearer x``), a PEM private key block. Used by
:mod:`distillmeter.privacy.redact`, whose rules catch the values that look random.

Names are split into words (``_ - .`` and camelCase), so ``max_new_tokens`` and
``token_budget`` are no secrets while ``hf_token``, ``apiKey`` and ``DB_PASSWORD`` are:

- a *strong* word anywhere makes a secret name: ``password``, ``pw``, ``secret``,
  ``apikey``, ``credentials``, ``auth``, ...;
- ``token`` as the last word does, unless it names a tokenizer's special token
  (``pad_token``, ``eos_token``, ...);
- ``key`` as the last word does, unless the word before it says what kind of data key it
  is (``text_key``, ``sort_key``, ``label_key``, ...);
- ``pass`` as the last word does (``db_pass``; ``pass_at_k`` and ``passes`` do not).
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"

STRONG_WORDS = frozenset({
    "password", "passwd", "passphrase", "pw", "pwd", "secret", "secrets", "credential",
    "credentials", "creds", "apikey", "cookie", "cookies", "privatekey", "accesskey",
    "secretkey", "authorization", "auth", "bearer", "pat", "sessionid", "signature"})
# A tokenizer's tokens and counts of tokens, not secrets: pad_token, eos_token, ...
SPECIAL_TOKEN_WORDS = frozenset({
    "pad", "eos", "bos", "unk", "sep", "cls", "mask", "start", "end", "stop", "eot",
    "image", "audio", "video", "special", "chat", "new", "max", "min", "num", "total",
    "first", "last", "next", "prev", "per", "sentinel", "im", "fim", "prefix", "suffix",
    "middle", "think", "tool", "answer", "reasoning", "boi", "eoi", "decoder", "vision"})
# Keys into data, not secrets: text_key, label_key, sort_key, ...
DATA_KEY_WORDS = frozenset({
    "text", "label", "labels", "answer", "question", "prompt", "input", "output",
    "target", "data", "field", "column", "dict", "cache", "primary", "foreign", "group",
    "metric", "seed", "hash", "partition", "lookup", "join", "sort", "row", "id", "map",
    "index", "dataset", "split", "config", "message", "messages", "content", "response",
    "completion", "chosen", "rejected", "context", "source", "doc", "document", "name",
    "task", "model", "reward", "value", "feature", "attribute", "instruction", "system",
    "role", "shard", "bucket", "dedup", "stage", "run", "method", "device", "layer",
    "state", "param", "params", "weight", "weights", "tensor", "score", "group_by"})
# Environment names that hold a directory, not a password.
HARMLESS_ENV_NAMES = frozenset({"PWD", "OLDPWD", "TOKENIZERS_PARALLELISM"})

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def name_words(name: str) -> list[str]:
    """``"HF_MIRROR_PW"`` -> ``["hf", "mirror", "pw"]``; ``"apiKey"`` -> ``["api", "key"]``."""
    return [w.lower() for w in _WORDS.findall(name)]


def is_secret_key(name: str) -> bool:
    """Whether a config key, a flag, a parameter or an environment name names a secret
    (see the module docstring)."""
    if name.upper() in HARMLESS_ENV_NAMES:
        return False
    words = name_words(name)
    if not words:
        return False
    if any(w in STRONG_WORDS for w in words):
        return True
    last, before = words[-1], (words[-2] if len(words) > 1 else None)
    if last == "token":
        return before not in SPECIAL_TOKEN_WORDS
    if last == "key":
        return before not in DATA_KEY_WORDS
    return last == "pass"


def _is_strong_name(name: str) -> bool:
    """A secret name that is no ordinary English word on its own: ``key: x`` and ``token:
    x`` are prose ("needs an EOS token: the tokenizer ..."), ``hf_token: x`` and
    ``password: x`` are not."""
    words = name_words(name)
    return is_secret_key(name) and (len(words) > 1 or words[0] in STRONG_WORDS)


# A PEM private key block, from its BEGIN line to its END line (or to the end of the text
# when the END line is not in it), across any kind of line break: real ones, "\r\n", or the
# two characters "\n" of a value written in an environment variable or JSON.
PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----")
PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----")
_PEM_BLOCK = re.compile(PEM_BEGIN.pattern + r".*?(?:" + PEM_END.pattern + r"|\Z)", re.DOTALL)
# the block's end without its BEGIN line (a key split over two values): all before it
_PEM_TAIL = re.compile(r"\A.*?" + PEM_END.pattern, re.DOTALL)
# HTTP credentials: the value of an Authorization header (with or without its scheme
# word), a bare "Bearer <token>", and API-key headers.
_AUTH_HEADER = re.compile(
    r"(?i)(?P<head>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|digest|token|negotiate|apikey|aws4-hmac-sha256)\s+)?)"
    r"(?P<value>[^\s,;\"']+)")
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)(?P<value>[A-Za-z0-9\-._~+/]{6,}=*)")
_KEY_HEADER = re.compile(
    r"(?i)(?P<head>\b(?:x-api-key|api-key|x-auth-token|private-token|x-access-token|"
    r"x-goog-api-key|ocp-apim-subscription-key)\s*:\s*)(?P<value>[^\s,;\"']+)")
# name=value, name: value, "name": "value", --name=value (a query string, lm-eval's
# model_args 'pretrained=x,token=abc', a dict's repr in an error message).
_ASSIGNMENT = re.compile(
    r"(?<![\w.\-])(?P<name>-{0,2}[A-Za-z_][\w.\-]*)(?P<q>[\"']?)(?P<sep>\s*=\s*|\s*:\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;&'\"}\])]+)")


def _head_kept(m: re.Match[str]) -> str:
    return f"{m['head']}{REDACTED}"


def _assignment(m: re.Match[str]) -> str:
    name = m["name"].lstrip("-")
    if name_words(name)[-1:] == ["authorization"]:  # _AUTH_HEADER's, scheme word kept
        return m.group(0)
    if not (_is_strong_name(name) if ":" in m["sep"] else is_secret_key(name)):
        return m.group(0)
    value = m["value"]
    if value.startswith("<redacted>") or (":" in m["sep"] and value.startswith("//")):
        return m.group(0)
    quote = value[0] if value[:1] in "'\"" else ""
    return f"{m['name']}{m['q']}{m['sep']}{quote}{REDACTED}{quote}"


def redact_forms(text: str) -> str:
    """``text`` with the secrets told by their surroundings replaced (see the module
    docstring): PEM private keys whole, header credentials, secret-named assignments."""
    if "-----BEGIN" in text:
        text = _PEM_BLOCK.sub(REDACTED, text)
    if "-----END" in text:
        text = _PEM_TAIL.sub(REDACTED, text)
    text = _AUTH_HEADER.sub(_head_kept, text)
    text = _BEARER.sub(lambda m: m.group(0) if m["value"].startswith("<redacted")
                       else _head_kept(m), text)
    text = _KEY_HEADER.sub(_head_kept, text)
    return _ASSIGNMENT.sub(_assignment, text)
