"""The search loop: where to look next and for how long.

A spec's space (``space``) gives the configurations; a sampler (``samplers``, ``known_cost_sampler`` with its
``metric_model``, ``acquisition``, ``candidates``, and ``warm_start`` / ``transfer`` for earlier searches) proposes
one, counted before training (``cost``); the scheduler and rung board (``scheduler``, ``rung_board``) decide its
fidelity; the controller (``controller``) dispatches it through an executor (``executor``, ``trial``) and tells the
result back. ``launch`` checks every input and wires these together; ``probe`` finds the budget before it starts.
"""
