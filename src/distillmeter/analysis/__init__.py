"""distillmeter.analysis."""
