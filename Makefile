PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup check test bench findings certificates clean

MUTATED := specs/40_vram_fixed.toml specs/41_gtt_fixed.toml specs/47_vram_fixed_stats.toml specs/48_gtt_fixed_stats.toml

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	@# --no-compile: Python compiles what is imported on first use, not every module of every wheel (that
	@# was half of the set-up's 30 s)
	$(BIN)/pip install -q --no-compile --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --no-compile --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# the document's C managers, as written and with every fix (other -D sets build on first use, cached)
	@$(BIN)/python -c "from pddgpu_verify.conformance.c_build import compiler, build, defines_for; \
	from pddgpu_verify.model.options import ALL_FIXES; c = compiler(); \
	print('C managers (csrc/):', f'built with {c}' if c and build([]) and build(defines_for(ALL_FIXES)) \
	      else 'no C compiler: the C replay and its tests are skipped')"
	touch $(STAMP)

# set-up only: the venv, the pinned dependencies and the project, nothing run
setup: $(STAMP)

check: $(STAMP)
	@$(BIN)/python -c "from pddgpu_verify.conformance.c_build import compiler as c; print('C back end (csrc/):', f'available ({c()})' if c() else 'unavailable: no C compiler, the C replay and its tests are skipped')"
	@# the mutation score of the fixed specs (a survivor, a missing property, fails the check) runs beside the
	@# table, on the cores its tail and each mutation run's original leave idle; its report follows the table
	@mkdir -p .cache
	@( $(BIN)/pddgpu-verify mutate --summary --cache .cache/mutate $(MUTATED) > .cache/mutate.out 2>&1; \
	   echo $$? > .cache/mutate.rc ) & \
	$(BIN)/pddgpu-verify check --prove; rc=$$?; wait; \
	echo "$(BIN)/pddgpu-verify mutate --summary --cache .cache/mutate $(MUTATED)"; cat .cache/mutate.out; \
	m=$$(cat .cache/mutate.rc); [ $$rc -ne 0 ] && exit $$rc; exit $$m

test: $(STAMP)
	$(BIN)/python -m pytest -n auto

bench: $(STAMP)
	$(BIN)/pddgpu-verify bench --output docs/BENCH.md
	$(BIN)/pddgpu-verify bench --proofs --output docs/BENCH.md
	$(BIN)/pddgpu-verify bench --mutate --output docs/BENCH.md
	$(BIN)/python -m pddgpu_verify.pddgpu.alloc_bench

# the proof certificates make check re-checks (specs/certificates/): search every fixed spec's proof in full
# and keep what it kept; run after a change to a model, a property or a lemma (a stale one only costs time)
certificates: $(STAMP)
	$(BIN)/pddgpu-verify check --prove --write-certificates --expected $$(grep -l '^prove = "PROVED"' specs/*.toml)

findings: $(STAMP)
	$(BIN)/pddgpu-verify findings --output docs/FINDINGS.md

clean:
	rm -rf $(VENV) build *.egg-info
