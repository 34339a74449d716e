"""``pddgpu-verify export --promela SPEC [-o FILE]``: the spec's model as Promela, so that SPIN checks exactly
what ``check`` checks (``checker/promela.py``).  Registered into the main group with ``main.add_command``."""
from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--promela", is_flag=True, help="Write the model as Promela for SPIN (the one format there is).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (default: standard output).")
def export(spec_path, promela, output):
    """Write SPEC's model for another model checker: one SPIN state per explorer state (without symmetry),
    every checked property an assertion, a deadlock SPIN's invalid end state."""
    from ..checker.promela import PromelaError, to_promela
    from ..checker.spec import SpecError, load_spec
    from .main import check_output_file, fail_input
    if not promela:
        fail_input("--promela: name the format to export (Promela is the only one)")
    if output is not None:
        check_output_file("--output", output)
    try:
        spec = load_spec(spec_path)
        model = spec.build()
        text = to_promela(model, spec.checked_properties(model), source=str(spec_path))
    except SpecError as e:
        fail_input(str(e))
    except PromelaError as e:
        fail_input(f"{spec_path}: {e}")
    except ValueError as e:          # an option or geometry error surfacing from the model builder
        fail_input(f"{spec_path}: {getattr(e, 'field', 'spec')}: {e}")
    if spec.liveness:
        click.echo(f"pddgpu-verify: note: {spec_path}: check.liveness: not translated (SPIN checks the safety "
                   "properties and deadlocks of this model only)", err=True)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
