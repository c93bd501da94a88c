"""Training and inference pipelines, one module per task (digits, text, mood).

Each module has the same verbs: load_data, build_model, train, evaluate, predict,
and a command line: `python -m pipelines.<task> train|evaluate ...`.
No Streamlit here: pages import these functions.
"""
