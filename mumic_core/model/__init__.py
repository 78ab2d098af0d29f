"""Model math: pure tensors and arrays in and out (losses, the tempered-sigmoid head, metrics,
active-learning strategies, label-quality ranking, fitting on arrays). No database, Streamlit or huey."""
