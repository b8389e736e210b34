"""The trial database: Optuna studies on SQLAlchemy storage (``storage``), kept through restarts
(``resilient_storage``), with each trial's eval predictions stored compactly (``predictions``)."""
