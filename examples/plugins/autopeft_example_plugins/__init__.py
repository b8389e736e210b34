"""Example autopeft plugins: a PEFT method peft has and autopeft's registry does not (FourierFT), and a metric."""
