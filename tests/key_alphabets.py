"""Random secrets in the formats people put on command lines and in environments, for the
redaction tests (and scripts/redaction_rates.py). Each maker takes a ``random.Random`` so
that every test run draws the same keys: fixed seeds, or seeds chosen by hypothesis.

The formats (public documentation of each service):
- AWS secret access key: 40 characters of base64's alphabet, ``/`` and ``+`` included;
- GitHub personal access token: ``ghp_`` + 36 alphanumerics (fine-grained:
  ``github_pat_`` + 82 characters of letters, digits and ``_``);
- Hugging Face user access token: ``hf_`` + 34 alphanumerics;
- Slack bot token: ``xoxb-`` + two groups of digits + 24 alphanumerics, dash-separated;
- JWT: three base64url parts joined by dots, the first two JSON;
- hex: 40 hex digits (WandB API keys; 32 for many others);
- base64url: 32 random bytes, unpadded (43 characters of letters, digits, ``-`` and ``_``).

``SHAPE_MAKERS`` (below) give the secrets that are told by where they stand rather than by
their alphabet: a URL password, header credentials, short options, PEM blocks, config keys.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable

ALNUM = string.ascii_letters + string.digits
# AWS's own documentation example key (it holds two slashes: a path, to the old redaction).
AWS_DOC_EXAMPLE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def aws(rng: random.Random) -> str:
    return _pick(rng, ALNUM + "/+", 40)


def github(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "ghp_" + _pick(rng, ALNUM, 36)
    return "github_pat_" + _pick(rng, ALNUM, 22) + "_" + _pick(rng, ALNUM + "_", 59)


def hf(rng: random.Random) -> str:
    return "hf_" + _pick(rng, ALNUM, 34)


def slack(rng: random.Random) -> str:
    return (f"xoxb-{_pick(rng, string.digits, rng.randint(10, 13))}-"
            f"{_pick(rng, string.digits, rng.randint(10, 13))}-{_pick(rng, ALNUM, 24)}")


def jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": str(rng.randrange(10**9)),
                                  "iat": rng.randrange(10**10)}).encode())
    return f"{header}.{payload}.{_b64url(rng.randbytes(32))}"


def hex_key(rng: random.Random) -> str:
    return rng.randbytes(rng.choice((16, 20))).hex()


def base64url(rng: random.Random) -> str:
    return _b64url(rng.randbytes(32))


KEY_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "aws": aws, "github": github, "hf": hf, "slack": slack, "jwt": jwt, "hex": hex_key,
    "base64url": base64url}


def keys(n: int, seed: int) -> dict[str, list[str]]:
    """``n`` keys of each alphabet, the same for the same seed."""
    rng = random.Random(seed)
    return {name: [make(rng) for _ in range(n)] for name, make in KEY_MAKERS.items()}


# ------------------------------------------------------------ secrets by their shape
# Secrets that the key alphabets above do not cover, each in the form it reaches
# distillmeter in (issue 18's campaign): a text (a config value, an env value, a message),
# a command line, an environment, or a config mapping. Each maker returns a Shape: the
# secret parts that must not survive, and the carrier.
PASSWORD_CHARS = ALNUM + "!$%^*_-~"  # no '@' or '/': they would end a URL's password
HEX = "0123456789abcdef"


class Shape:
    """``secrets``: what must appear nowhere; ``text`` / ``argv`` / ``env`` / ``config``:
    the carrier (one of them set)."""

    def __init__(self, secrets: list[str], *, text: str | None = None,
                 argv: list[str] | None = None, env: dict[str, str] | None = None,
                 config: dict | None = None):
        self.secrets, self.text, self.argv, self.env, self.config = \
            secrets, text, argv, env, config


def password(rng: random.Random) -> str:
    """A password as people pick them: 10-16 characters, symbols allowed; one letter and
    one digit at least (so that no test password is a plain word)."""
    body = _pick(rng, PASSWORD_CHARS, rng.randint(8, 14))
    return rng.choice(string.ascii_letters) + body + rng.choice(string.digits)


def pem_key(rng: random.Random) -> tuple[str, list[str]]:
    """A PEM private key block (random base64 body, 64 per line, a short last line) and its
    base64 lines."""
    body = base64.b64encode(rng.randbytes(rng.randint(300, 700))).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    kind = rng.choice(["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY",
                       "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"])
    return "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]), lines


def _pem_shape(rng: random.Random) -> Shape:
    block, lines = pem_key(rng)
    split = rng.choice(["newline", "crlf", "escaped", "argv", "no-end"])
    if split == "argv":  # one argument per line, as a shell loop over the file gives them
        return Shape(lines, argv=["deploy", "--note", *block.split("\n"), "--done"])
    if split == "no-end":  # cut before its END line (a value truncated by a tool)
        block = block.rsplit("\n", 1)[0]
    joined = {"newline": "\n", "crlf": "\r\n", "escaped": "\\n", "no-end": "\n"}[split]
    return Shape(lines, text=f"key: {block.replace(chr(10), joined)} (end)")


def _alnum_token(rng: random.Random, n: int) -> str:
    # an API token: letters of both cases and digits
    while True:
        tok = _pick(rng, ALNUM, n)
        if any(c.islower() for c in tok) and any(c.isupper() for c in tok) and \
                any(c.isdigit() for c in tok):
            return tok


def _url_empty_user(rng: random.Random) -> Shape:
    pw = password(rng)
    return Shape([pw], text=f"redis://:{pw}@cache.internal:6379/0")


def _bearer_alnum(rng: random.Random) -> Shape:
    tok = _alnum_token(rng, 28)
    return Shape([tok], text=f"Authorization: Bearer {tok}")


def _bearer_hex(rng: random.Random) -> Shape:
    tok = _pick(rng, HEX, 24)
    return Shape([tok], text=f"Bearer {tok}")


def _mysql_p(rng: random.Random) -> Shape:
    pw = password(rng)
    return Shape([pw], argv=["mysql", "-h", "db.internal", f"-p{pw}", "runs"])


def _curl_u(rng: random.Random) -> Shape:
    pw = password(rng)
    return Shape([pw], argv=["curl", "-u", f"admin:{pw}", "https://hub.internal/api"])


def _flag_pw(rng: random.Random) -> Shape:
    pw = password(rng)
    return Shape([pw], argv=["sync", "--pw", pw, "--dry"])


def _env_pw(rng: random.Random) -> Shape:
    pw = password(rng)
    return Shape([pw], env={"HF_MIRROR_PW": pw})


def _aws_asia(rng: random.Random) -> Shape:
    key = "ASIA" + _pick(rng, string.ascii_uppercase + string.digits, 16)
    return Shape([key], text=f"temporary id {key} (session)")


def _model_args(rng: random.Random) -> Shape:
    pw, key = password(rng), _pick(rng, ALNUM, rng.randint(12, 30))
    return Shape([pw, key], config={"eval": {"lm_eval": {"model_args": {
        "pretrained": "org/model", "password": pw, "api_key": key}}}})


def _model_args_string(rng: random.Random) -> Shape:
    tok = _pick(rng, ALNUM, rng.randint(8, 30))
    return Shape([tok], text=f"pretrained=org/model,dtype=bfloat16,token={tok}")


def _token_in_message(rng: random.Random) -> Shape:
    tok = _alnum_token(rng, 28)
    return Shape([tok], text=f"config.yaml:4: training.lr: Input should be a valid number, "
                             f"unable to parse string as a number (got {tok!r})")


SHAPE_MAKERS: dict[str, Callable[[random.Random], Shape]] = {
    "url-empty-user": _url_empty_user, "bearer-alnum-28": _bearer_alnum,
    "bearer-hex-24": _bearer_hex, "mysql-p": _mysql_p, "curl-u": _curl_u,
    "flag-pw": _flag_pw, "env-mirror-pw": _env_pw, "aws-asia": _aws_asia, "pem": _pem_shape,
    "model-args": _model_args, "model-args-string": _model_args_string,
    "token-28-in-message": _token_in_message,
}


def shapes(seed: int) -> dict[str, Shape]:
    """One secret of every shape, the same for the same seed."""
    rng = random.Random(seed)
    return {name: make(rng) for name, make in SHAPE_MAKERS.items()}
