"""Environment variables that pass settings from a grid's driver to its runs, named once.

Kept free of imports so that every layer may read them (the grid executor must not pay
for importing torch to know a name).
"""

#: Set to 1 by ``sweep --fast``: every config ``make_config`` builds is in fast mode.
FAST_ENV = "ECMLIB_FAST"
#: The torch threads of one grid cell, set by the grid executor for its workers.
THREADS_ENV = "ECMLIB_RUN_THREADS"
