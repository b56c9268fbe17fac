"""distillmeter.render."""
