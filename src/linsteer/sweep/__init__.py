"""The steering sweep, one concern a module, in the order a sweep runs them:

- :mod:`linsteer.sweep.tasks`: the evaluation tasks (built-in and benchmark files) and their roles;
- :mod:`linsteer.sweep.mc`: multiple-choice scoring (the prefix-tree scorer) under many settings;
- :mod:`linsteer.sweep.gen`: generation scoring (greedy answers, final number) under many settings;
- :mod:`linsteer.sweep.neutral`: side effects on neutral text (perplexity, KL);
- :mod:`linsteer.sweep.run`: the sweep loop over task splits, resumable through the results store.
"""
