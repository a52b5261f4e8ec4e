"""The NWS core: the sketch engine and the sampling policy, plain Python over torch and numpy.

No I/O lives here (no gRPC, HTTP, Redis or files): :mod:`~nws_core.sketch` is the
Nadaraya-Watson sketch (:mod:`~nws_core.hashing`, its sign-random-projection hashes),
:mod:`~nws_core.policy` turns estimates into keep probabilities and unbiased weights,
:mod:`~nws_core.keep_ratio` sets a request's keep ratio from the predicted variance reduction,
:mod:`~nws_core.prune` is InfoBatch's rule on the sketch's estimates, :mod:`~nws_core.sampling`
is one Sample draw (the same in the server and in the trainer's in-process backend), and
:mod:`~nws_core.errors` is the one error hierarchy, each class carrying its status. The
server (``nws_server``) wraps this core in a catalog, durability and transports; the trainer's
in-process backend runs it directly.
"""
