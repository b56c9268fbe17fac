"""distillmeter.privacy: secrets kept out of everything the package writes or prints.

``redact`` finds secret-looking text (tokens and keys by their shape, secret-named
variables and flags, credentials in URLs) and replaces it; ``secret_forms`` recognises
secrets by their surroundings (a PEM key, an ``Authorization:`` header). The ledger, the
environment snapshot, the config echo, error messages and the integrations all go
through it; it imports nothing else of the package, so every layer may use it.
"""
