"""`python -m retrain` runs the retrain command."""

from retrain.commands.retrain_main import run

if __name__ == "__main__":
    run()
