"""Sweeps: many variants of one spec, trained in parallel, ranked on validation.

    plan = plan_sweep(definition)          # every variant resolved and validated
    outcome = run_sweep(plan, engine, cache, out_dir, report)

The pieces, in the order a sweep uses them:

- `plan`: the sweep definition (a sweep file or command-line axes) expanded
  into trials, each an ordinary resolved spec with its stage keys. Every
  problem of every variant is reported before anything trains.
- `trial`: what one trial does, on whichever process or machine runs it.
- `engines`: where trials run: in this process, in local worker processes
  (`--jobs N`), or on a Dask cluster (`--scheduler tcp://HOST:PORT`).
- `driver`: dispatches the trials that are not cached, stores what comes
  back in the driver's cache, writes each trial's run folder, shows progress.
- `results`: results.csv / results.json, the leaderboard, the pictures and
  the best variant's spec.
"""
