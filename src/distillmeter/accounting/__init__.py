"""distillmeter.accounting."""
