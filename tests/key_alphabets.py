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
