"""distillmeter.energy."""
