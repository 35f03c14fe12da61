"""One module per job, each a run on resolved objects (DESIGN §1, the runs layer): ``surface``
(``landscape compute``), ``curvature``, ``inspect`` (the diagnostics of ``landscape.diagnostics``
over a model and its data) and ``sweep`` (a grid of surface runs). The interfaces (``cli``,
``api``) call them; readers, the store and the core below never import them."""
