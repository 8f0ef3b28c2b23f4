"""Views: figures and the interactive detection explorer."""
