"""distillmeter.commands."""
