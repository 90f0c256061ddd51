"""Toy models of superposition (Section 4 and Appendix C of Heap et al. 2025).

- `data`: the superposed toy data of Sharkey et al. (2022), the 2-D Lomax example of Figure 4,
  Gaussian controls and transformer embedding matrices; `glove`: GloVe word vectors.
- `mlp`: the randomly initialised two-layer MLP the data is passed through.
- `l1_sae`: the L1-penalised SAE of Appendix C.2 and its training loop.
- `metrics`: 1 - normalised reconstruction error (the paper's "explained variance") and the
  explained variance about the mean, sparsity measures, MMCS and Pareto frontiers.
- `sweep`: one dataset's sweep (its kinds x latent counts x L1 coefficients) as a tidy table.
- `plots`: Figures 4, 5, 6/13-16 and 7/17-20.
"""
