"""Generated data: the demo's shape scenes, drawing scenes and the starter model's caption corpus."""
