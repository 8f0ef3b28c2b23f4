"""ecmlib: Equivalent Classification Mapping (ECM) for weakly supervised temporal action localisation.

The helper package behind the ECM Workbench notebooks, in layers (each imports only from
the layers below it; ``tests/test_imports.py`` checks it):

- ``ecmlib.method``: the method itself, thin: the network (``model``), its losses
  (``losses``), localisation (``localize``) and detection mAP (``evaluation``), plus the
  same computations written plainly (``reference``) that the fast paths are tested against;
- ``ecmlib.data``: feature and annotation readers, safe loading, the synthetic benchmark;
- ``ecmlib.training``: configuration, setup, the training loop, inference, checkpoints;
- ``ecmlib.studies``: the ablation settings, the studies of record, grids, the workbook;
- ``ecmlib.views``: figures and the interactive explorer;
- ``ecmlib.cli`` / ``ecmlib.parity``: the command line and the parity check, on top;
- ``ecmlib.datasets``, ``ecmlib.env``, ``ecmlib.io``, ``ecmlib.errors``: facts and helpers every
  layer shares.
"""

__version__ = "0.1.0"
