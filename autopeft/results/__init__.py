"""What a search found, read from the store: its front (``pareto``) against chance and noise (``chance``, ``noise``,
``untouched_model``), choosing (``pick``), checking (``confirm``, ``baselines``, ``retrain``), showing (``views``,
``responses``) and exporting (``export``) the winners."""
