"""distillmeter.integrations."""
