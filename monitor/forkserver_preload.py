"""Imported once by the extraction pool's forkserver (:class:`monitor.engine.Extractor`), before it forks a worker.

Each worker would otherwise load the same things for itself on its first pages
(:func:`monitor.tasks.warm_up`: lazy imports, justext's stop lists, dateparser's
month names, the language model; about 1 CPU-second a process, paid inside the
first pass). Loaded here once, every worker is forked with them and shares their
memory with its siblings (copy-on-write); ``gc.freeze`` keeps the workers'
garbage collector off those objects, so it does not copy the pages that hold them.
"""

import gc

from monitor.tasks import warm_up

warm_up()
gc.freeze()
