"""The NumPy oracle: the losses with analytic gradients, the queue and EMA, the optimisers' updates, the augmentation's parameters and the worked examples. NumPy only."""
