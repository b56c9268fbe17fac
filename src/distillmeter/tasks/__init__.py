"""distillmeter.tasks."""
