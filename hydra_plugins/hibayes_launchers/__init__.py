"""hibayes presets of the SLURM and Ray launchers (hibayes.sweep.cluster)."""
