"""Auto-interpretability of SAE latents (Section 3.3): latents sampled per SAE and stored in
delphi's on-disk format, explained and scored with delphi (fuzzing and detection, AUROC), a
token-identity null explainer, and the token-distribution entropy of each latent."""
