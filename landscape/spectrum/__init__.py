"""The Hessian spectrum of the loss at θ: eigenpairs, trace and spectral density.

- ``settings``: every setting's default (``SpectrumSettings``) and a run's config (``HessianConfig``);
- ``operator``: ``v ↦ H v`` with one gradient graph per data chunk reused across products where
  memory allows (``GraphPlan`` says which), restricted to blocks of tensors on request;
- ``eigen``: the k largest / smallest eigenpairs (Lanczos via ``eigsh``);
- ``trace``: Hutchinson and Hutch++ estimates of ``trace(H)`` with their standard errors;
- ``lanczos``: Lanczos with full reorthogonalization and the spectral density by stochastic
  Lanczos quadrature.

Nothing is imported here, so that ``landscape.spectrum.settings`` (read by the command line's
help) loads neither scipy nor torch's autograd machinery.
"""
