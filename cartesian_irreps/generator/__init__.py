"""The code generator: exact derivation -> committed Python modules in ``cartesian_irreps/generated``.

* :mod:`.emit` writes the coupling and harmonic tables (deterministic);
* :mod:`.strategy` counts FLOPs, times the candidate strategies (``generate --tune``) and writes
  the evaluation plans from the committed tuning data.
"""
