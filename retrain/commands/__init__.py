"""The command-line tools: the only readers of absl flags, one module per console script.

Each ``*_main.py`` turns its flags into one frozen config (retrain.config), calls the
library and renders what it returns; ``cli`` holds what they share (quiet start-up,
one-line errors, exit codes), ``cache_flags`` the flags that choose the images, split,
module and cache (shared by retrain and retrain-cache), ``output_flags`` the output
flags made from the outputs table, ``legacy`` the older retrain.py's command lines.
"""
