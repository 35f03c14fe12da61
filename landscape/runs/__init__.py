"""One module per job, each a run on resolved objects (DESIGN §1, the runs layer): ``surface``
(``landscape compute``), ``curvature``, ``inspect`` (the diagnostics of ``landscape.diagnostics``
over a model and its data), ``sweep`` (a grid of surface runs), ``align`` (model B's units
permuted to match A's) and ``study`` (the straight and aligned paths of a pair). The interfaces
(``cli``, ``api``) call them; readers, the store and the core below never import them."""
