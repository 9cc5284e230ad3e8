"""retrain's output flags, made from the outputs table (exports.OUTPUTS), and read back into OutputConfig.

Each output declares its flags (exports.Flag); here they become absl flags with
OutputConfig's defaults and types, and their values become an OutputConfig, checked by
the outputs' own rules. No hand-written mapping: a new output's flags appear by
themselves.
"""

from absl import flags

from retrain import config as config_lib
from retrain import exports
from retrain.commands import cli


def define(flag_values: flags.FlagValues, module_name: str) -> dict:
    """Defines every output flag in flag_values as belonging to module_name (for --help); {name: FlagHolder}."""
    defaults = config_lib.OutputConfig()
    own = dict(flag_values=flag_values, module_name=module_name)
    holders = {}
    for flag in exports.all_flags():
        default = getattr(defaults, flag.name)
        if flag.choices:
            holders[flag.name] = flags.DEFINE_enum(flag.name, default, list(flag.choices), flag.help, **own)
        elif isinstance(default, bool):
            holders[flag.name] = flags.DEFINE_boolean(flag.name, default, flag.help, **own)
        elif isinstance(default, int):
            holders[flag.name] = flags.DEFINE_integer(flag.name, default, flag.help, **own)
        elif isinstance(default, float):
            holders[flag.name] = flags.DEFINE_float(flag.name, default, flag.help, **own)
        else:
            holders[flag.name] = flags.DEFINE_string(flag.name, default, flag.help, **own)
    return holders


def output_config(holders: dict) -> config_lib.OutputConfig:
    """The OutputConfig the flags give; raises cli.UsageError naming a flag whose value cannot work."""
    options = config_lib.OutputConfig(**{name: holder.value for name, holder in holders.items()})
    problems = exports.check_options(options)
    if problems:
        raise cli.UsageError(problems[0])
    return options
