"""distillmeter.models."""
