"""Trial workers: build the PEFT model, train, evaluate and measure, in a Ray actor or in-process."""
