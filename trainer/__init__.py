"""The workstation: data, training, hyperparameter search, reports, export."""
