"""distillmeter.report."""
