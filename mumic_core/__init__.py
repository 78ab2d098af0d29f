"""MuMIC core: the model, training, scoring and the services the app, CLI and worker share."""
