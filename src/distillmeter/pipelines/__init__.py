"""distillmeter.pipelines."""
