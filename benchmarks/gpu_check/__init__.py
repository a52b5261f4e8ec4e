"""The CUDA path, measured: one prepared script for a GPU machine, with a CPU dry run.

Run it through ``scripts/gpu_check.sh`` (which picks the Python, installs carried wheels and sets
PYTHONPATH to the project's source and benchmarks/); its header says how to prepare and carry
what a machine without network lacks. Four sections, each in its own process with its own time
limit, each writing one table ``gpu_<section>.md`` (naming the device, driver, torch and CUDA
versions), each in its own module here:

* ``tests``: the ``gpu``-marked tests (CPU and CUDA give identical buckets and bit-identical
  serialized state for the same seed);
* ``engine``: estimate / update throughput of the engine on the device for d in {384, 768},
  K in {10, 16}, R = 200, batch 1,024 to 65,536, beside this run's matrix-product rate (the
  hashing bound) in float32 and bfloat16. Variants: the engine as served (``estimate``), the
  same arithmetic without the host round trip (``kernel``), with bfloat16 projections (measured
  here only; the engine hashes in float32, so CPU results stay identical) and replayed as a
  CUDA graph (CUDA only). Goal: 50 M estimates/s in-process at d = 384, R = 200, K = 10;
  ``bf16 agree`` is the share of (example, row) buckets that bfloat16 hashing leaves unchanged;
* ``server``: ``nws-server --device DEV`` under a short ``benchmarks/load.py`` run, a
  one-client Sample round trip, and the in-process cost of each stage of a Sample (protobuf
  decode, host-to-device copy, the engine on the device, the policy, the response encode);
* ``finetune``: MiniLM fine-tuned by ``nws-train`` with ``full`` and ``nws`` (``fill``) on the
  device; from each run's summary.json: steps, examples forwarded and back-propagated, training
  seconds and the compute ``ledger`` where summary.json has one.

``__main__`` is the driver (arguments, one time-limited process per section, the summary, the
copy to ``$OUT``); ``common`` holds the sizes, the table header and ``require``; ``prepare``
the ``--prepare`` step (wheels, float16 model, corpus).

``--dry-run``: the same sections and code paths on the CPU with tiny sizes, tables into ``--out``
(a temporary folder by default), for the test suite (tests/e2e/test_gpu_check.py). A section
that cannot run (a missing package, no model) says so in its table; the exit status is 1 when
any section failed. With ``$OUT`` set (the device tool) the tables and the log are copied there.

    bash scripts/gpu_check.sh [--dry-run] [--out DIR] [--wheels DIR] [--sections a,b]
    PYTHONPATH=benchmarks python -m gpu_check --prepare .whl [--skip-download]   # with network
"""
