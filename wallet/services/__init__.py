"""Every write of the wallet app. Views, admin actions and commands call these and nothing else."""
