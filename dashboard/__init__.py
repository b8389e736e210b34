"""The autopeft dashboard: a Streamlit app that reads the trial database (read-only) and shows searches live."""
