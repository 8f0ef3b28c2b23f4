"""ecmlib: Equivalent Classification Mapping (ECM) for weakly supervised temporal action localisation.

A small helper package behind the ECM Workbench notebooks: model, losses, localisation,
evaluation, data, synthetic benchmark, training loop and plots.
"""

__version__ = "0.1.0"
