"""Secret redaction for everything a run writes: environment variables, command lines,
config values, labels, warnings and error texts.

The rules, applied in order:

1. secrets told by their surroundings (:mod:`distillmeter.privacy.secret_forms`): PEM
   private key blocks whole, ``Authorization:`` / ``Bearer`` / API-key header values, and
   values under a secret-sounding name (``token=abc``, ``"password": "x"``);
2. passwords in URLs (``https://user:<redacted>@host``, ``redis://:<redacted>@host``);
3. unbroken runs of key characters (letters, digits, ``+ / _ -``) that are 32+ hex digits
   (WandB keys) or look random rather than written by a person (see
   :func:`looks_like_key`), redacted whole: runs of 32 or more, and runs of 20 to 31 that
   mix lower case, upper case and digits (an API token of 28 alphanumerics);
4. known token formats (``hf_``, ``sk-``, ``ghp_``, AWS key ids ``AKIA``/``ASIA``/...,
   Slack ``xox?-``, JWTs, ...), shorter ones included.

Structured data (configs, labels, MLflow params) is redacted by key as well: a value under
a secret-sounding key (:func:`~distillmeter.privacy.secret_forms.is_secret_key`) goes
whatever it looks like, at any depth.

A random key (an AWS secret key, base64 or base64url) may hold ``/`` and ``-``, so a slash
does not make a run a path. What tells a path, a hub id (``org/model``) or a run name from
a key is how its characters follow one another: people write words (lowercase runs,
``Capitalised`` or ``CamelCase`` words, digit groups, a separator every few characters),
while in a key each character's class (lower, upper, digit, separator) is drawn afresh.
:func:`randomness` scores a run by the log-likelihood ratio of those two models, per
character.

Measured on the development machine (2026-11-29, ``scripts/redaction_rates.py --keys
50000``): of 50,000 random keys of each format in tests/key_alphabets.py (AWS, GitHub,
Hugging Face, Slack, JWT, hex, base64url) none was kept; of 128,783 runs of 32+ characters
in this machine's file paths, 41 (0.03%) scored as keys and would be redacted (CamelCase
Perl and CMake module names such as ``CMakeExtraGeneratorDetermineCompilerMacros...``): a
readable path is lost rather than a secret leaked. Paths and hub ids made of short words
(``HuggingFaceTB/SmolLM2-135M-Instruct``) are kept by structure (:func:`_reads_as_words`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from distillmeter.privacy.secret_forms import (
    PEM_BEGIN,
    PEM_END,
    REDACTED,
    is_secret_key,
    redact_forms,
)

# Secret-looking names: env names *containing* one of these.
SECRET_NAME_PARTS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "PASS",
                     "AUTH", "COOKIE", "SESSION", "PRIVATE", "SIGNATURE")
# Env names that contain such a part but hold no secret.
HARMLESS_NAMES = frozenset({"TOKENIZERS_PARALLELISM", "PWD", "OLDPWD"})
# Command-line flags are split into words: --hf-token is secret, --max-new-tokens is not.
_FLAG_WORD_RE = re.compile(
    r"^(token|key|secret|password|passwd|passphrase|pass|pwd|pw|credentials?|auth|"
    r"authorization|apikey|"
    r"cookie|pat|[a-z]*(token|key|secret|password))$")

_PREFIXED_SECRET = re.compile(
    r"(?<![A-Za-z0-9])(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_\-]{16,}|sk_(live|test)_[A-Za-z0-9]{16,}|"
    r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{16,}|"
    r"xox[abeprs]-[A-Za-z0-9\-]{10,}|(AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|APKA|ABIA|ACCA)"
    r"[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,}|"
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):"
                              r"(?P<pw>[^@/\s]+)@")
_UUID = re.compile(r"^(GPU-|MIG-)?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# '=' only as base64 padding at the end: NAME=value splits into two runs.
LONG_RUN = 32   # from this length a run is judged by looks_like_key's full rules
SHORT_RUN = 20  # runs of SHORT_RUN..LONG_RUN-1: alphanumeric ones only (_short_key)
_TOKEN_RUN = re.compile(rf"[A-Za-z0-9+/_\-]{{{SHORT_RUN},}}=*")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{32,}")

# How characters of written names and paths follow one another: P(next class | class),
# classes l(ower), u(pper), d(igit), s(eparator: + / _ - =). Set by hand to describe
# identifiers (words of several letters, Capitalised or CamelCase, digit groups, a
# separator every few characters); the threshold below was chosen on the measurements in
# the module docstring.
_WRITTEN = {"l": {"l": .80, "u": .04, "d": .06, "s": .10},
            "u": {"l": .35, "u": .50, "d": .05, "s": .10},
            "d": {"l": .05, "u": .05, "d": .75, "s": .15},
            "s": {"l": .60, "u": .15, "d": .20, "s": .05}}
# Characters of each class in a key alphabet (base64: 26 + 26 + 10 + 2 separators).
_CLASS_SIZE = {"l": 26, "u": 26, "d": 10, "s": 2}
RANDOMNESS_THRESHOLD = -0.3  # bits per character; above it a run is taken for a key
MIN_ENTROPY = 3.5            # bits per character: 'aaaa...' or 'abababab...' is no key
# Mean characters per word (CamelCase words, digit groups) below which a 20-31 character
# run is random: 99.8% of random 28-character alphanumeric runs are below it, and 15 of
# 17,147 mixed-case identifiers of 20-31 letters in this machine's Python packages (see
# the module docstring for the measurement).
MAX_SHORT_WORD = 3.2
MIN_HEX_ENTROPY = 2.5        # random 32-hex keys: 3.2 or more (100,000 drawn); '0' * 40 is 0


def _char_class(c: str) -> str:
    return "l" if c.islower() else "u" if c.isupper() else "d" if c.isdigit() else "s"


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def randomness(run: str) -> float:
    """Bits per character by which a key's model (each character drawn uniformly from the
    classes the run uses; all of base64 when it mixes cases) explains ``run`` better than
    the written-name model. Positive: random-looking; negative: written by a person."""
    classes = [_char_class(c) for c in run]
    present = set(classes)
    if {"l", "u"} <= present:
        present = set(_CLASS_SIZE)  # mixed case: the base64 / alphanumeric alphabets
    total = sum(_CLASS_SIZE[c] for c in present)
    bits = sum(math.log2(_CLASS_SIZE[b] / total) - math.log2(_WRITTEN[a][b])
               for a, b in zip(classes, classes[1:], strict=False))
    return bits / max(1, len(classes) - 1)


def looks_like_key(run: str) -> bool:
    """Whether an unbroken run of 32+ key characters is a secret: 32+ hex digits (WandB
    keys; a git SHA too), or a run that mixes letter cases (or letters and digits, without
    a slash) and scores as random (:func:`randomness`). Slashes do not make a path: AWS
    secret keys hold them. UUIDs (GPU ids) are kept."""
    if _UUID.match(run) or _reads_as_words(run):
        return False
    body = run.rstrip("=")
    if len(body) < LONG_RUN:
        return _short_key(body)
    if _HEX_RUN.fullmatch(body):
        return _entropy(body) >= MIN_HEX_ENTROPY
    lower = any(c.islower() for c in body)
    upper = any(c.isupper() for c in body)
    digit = any(c.isdigit() for c in body)
    if not (lower and upper) and not ((lower or upper) and digit and "/" not in body):
        return False
    return _entropy(body) >= MIN_ENTROPY and randomness(body) > RANDOMNESS_THRESHOLD


def _short_key(body: str) -> bool:
    """An alphanumeric run of SHORT_RUN to LONG_RUN - 1 characters (an API token of 20-31
    characters, such as a 28-character one echoed in an error message) is a key when it
    mixes lower and upper case and its words are short: people's CamelCase names
    (``DeepSeekR1DistillQwen32B``) are made of words of 3 or more characters, a random run
    of letters and digits changes class every 2 (see MAX_SHORT_WORD)."""
    if not SHORT_RUN <= len(body) < LONG_RUN or not body.isascii() or not body.isalnum():
        return False
    if not (any(c.islower() for c in body) and any(c.isupper() for c in body)):
        return False
    words = len(_CAMEL_WORDS.findall(body))
    return _entropy(body) >= MIN_ENTROPY and len(body) / words < MAX_SHORT_WORD


_CAMEL_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_ALNUM_RUN = re.compile(rf"(?<![A-Za-z0-9])[A-Za-z0-9]{{{SHORT_RUN},{LONG_RUN - 1}}}"
                        r"(?![A-Za-z0-9])")


_WORD_SPLIT = re.compile(r"[/_.\-]")
MAX_WORD = 16  # a hub id's or path's parts between separators: words, not key-length runs


def _reads_as_words(run: str) -> bool:
    """A path or hub id built of words: it holds a slash, also ``-``, ``_`` or ``.`` (so
    more parts than the slashes alone make), and no part longer than MAX_WORD characters
    (``HuggingFaceTB/SmolLM2-135M-Instruct``). No key format matches: base64 keys hold
    ``/`` and ``+`` only (parts between slashes alone), base64url keys ``-`` and ``_`` but
    never ``/``, and a random run's parts are long."""
    if "/" not in run:
        return False
    parts = [p for p in _WORD_SPLIT.split(run) if p]
    return len(parts) >= run.count("/") + 2 and max(map(len, parts)) <= MAX_WORD


def redact_text(text: str) -> str:
    """``text`` with secret-looking substrings replaced: PEM private keys, header
    credentials and secret-named values, passwords in URLs, random-looking runs, and known
    token formats (hf_, sk-, ghp_, AKIA, ASIA, JWTs, ...)."""
    text = redact_forms(text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    # Whole random runs first: a key can hold a known prefix by chance ('...7ghs_4ns...'),
    # and cutting it there would leave the key's head behind.
    text = _TOKEN_RUN.sub(_run, text)
    return _PREFIXED_SECRET.sub(REDACTED, text)


def _run(m: re.Match[str]) -> str:
    """A run of key characters: redacted whole when it is a key, else the short random
    alphanumeric runs inside it (``note_<28-character token>``)."""
    run = m.group(0)
    if looks_like_key(run):
        return REDACTED
    return _ALNUM_RUN.sub(lambda a: REDACTED if _short_key(a.group(0)) else a.group(0), run)


def is_secret_name(name: str) -> bool:
    """An environment variable name that suggests a secret (``HF_TOKEN``, ``WANDB_API_KEY``,
    ``DB_PASSWORD``, ``HF_MIRROR_PW``...)."""
    upper = name.upper()
    if upper in HARMLESS_NAMES:
        return False
    return any(p in upper for p in SECRET_NAME_PARTS) or is_secret_key(name)


def redact_env(mapping: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``mapping`` (environment variables) with secrets replaced by
    ``<redacted>``: every value whose name looks secret, and secret-looking parts of the
    other values."""
    return {k: REDACTED if is_secret_name(k) else redact_text(str(v))
            for k, v in mapping.items()}


def _is_secret_flag(flag: str) -> bool:
    words = [w for w in re.split(r"[-_.]+", flag.lstrip("-").lower()) if w]
    return any(_FLAG_WORD_RE.match(w) for w in words) or is_secret_key(flag.lstrip("-"))


# Short options whose value is a password or holds one: mysql's -pPASSWORD (and sshpass's
# -p PASSWORD), curl's -u user:password. Another tool's -p (a port, pytest's plugin) loses
# its value in the record: a lost port number rather than a leaked password.
_PASSWORD_SHORT = "-p"
_USER_SHORT = ("-u", "--user", "--proxy-user")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secrets redacted: the value of a secret-named flag
    (``--hf-token X``, ``--api-key=X``, ``--pw X``), of ``-pX`` / ``-p X``, the password of
    ``-u user:password``, ``NAME=value`` pairs with a secret name, a PEM private key split
    over several arguments, and secret-looking text anywhere."""
    out: list[str] = []
    redact_next = user_next = in_pem = False
    for arg in argv:
        if in_pem:  # inside a private key given over several arguments: up to its END line
            out.append(REDACTED)
            in_pem = not PEM_END.search(arg)
            continue
        if PEM_BEGIN.search(arg) and not PEM_END.search(arg):
            out.append(redact_text(arg))
            in_pem = True
            continue
        if redact_next:
            out.append(REDACTED)
            redact_next = False
            continue
        if user_next:
            out.append(_user_password(arg))
            user_next = False
            continue
        if arg.startswith("-") and len(arg) > 1:
            flag, eq, value = arg.partition("=")
            if arg == _PASSWORD_SHORT:
                out.append(arg)
                redact_next = True
                continue
            if arg.startswith(_PASSWORD_SHORT) and not arg.startswith("--"):
                out.append(f"{_PASSWORD_SHORT}{REDACTED}")
                continue
            if arg.startswith("-u") and not arg.startswith("--") and ":" in arg:
                out.append(f"-u{_user_password(arg[2:])}")
                continue
            # the flag itself is text as well: a random key that starts with '-' is no flag
            if _is_secret_flag(flag):
                if eq:
                    out.append(f"{redact_text(flag)}={REDACTED}")
                else:
                    out.append(redact_text(arg))
                    redact_next = True
                continue
            if flag in _USER_SHORT:
                if eq:
                    out.append(f"{flag}={_user_password(value)}")
                else:
                    out.append(arg)
                    user_next = True
                continue
        name, eq, value = arg.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and is_secret_name(name):
            out.append(f"{name}={REDACTED}")
            continue
        out.append(redact_text(arg))
    return out


def _user_password(value: str) -> str:
    """``user:password`` -> ``user:<redacted>`` (a user name alone is kept)."""
    user, colon, _ = value.partition(":")
    return f"{redact_text(user)}:{REDACTED}" if colon else redact_text(value)


def redact_values(obj: Any, *, _secret: bool = False) -> Any:
    """Redact a JSON-like structure (configs, labels, details, MLflow params): every value
    under a secret-sounding key (``password``, ``api_key``, ``hf_token``; not
    ``max_new_tokens``: see :func:`~distillmeter.privacy.secret_forms.is_secret_key`) at any
    depth, whatever it looks like; and secret-looking text inside every other string
    (``model_args: "pretrained=x,token=abc"``). Booleans and None are kept."""
    if isinstance(obj, Mapping):
        return {k: redact_values(v, _secret=_secret or (isinstance(k, str)
                                                        and is_secret_key(k)))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_values(v, _secret=_secret) for v in obj]
    if _secret and isinstance(obj, (str, int, float)) and not isinstance(obj, bool):
        return REDACTED
    if isinstance(obj, str):
        return redact_text(obj)
    return obj
