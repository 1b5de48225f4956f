"""Research beside the product: the benchmark (``research.bench``), the evaluation harness
(``research.evaluation``, the rows and statistics it measures ``research.results``, its report
and charts ``research.report``), the proxy reward (``research.proxy``) and one-off measurement
scripts (``research/scripts/``, each named by the results page under ``docs/results/`` that
ran it).

The service's runtime (``service``, ``worker``, ``seal``) imports none of it; the CLI's
``seal eval`` and ``seal bench`` commands do, lazily. Its own dependencies (matplotlib, for the
charts) come with the ``research`` extra: ``pip install '.[research]'`` (``make install``
includes it).
"""
