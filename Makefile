# MaLPi: set-up, tests, demo and benchmarks. Each target makes the virtual
# environment it needs in .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := robot,trainer,ray,dev

.PHONY: test lint format demo clean bench bench-sim bench-robot bench-web bench-trainer \
	bench-deploy bench-early-stopping

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole loop on the simulator, through the real commands: the expert
# drives and records on a simulated car (a folder), the drives come home, a
# small search trains, the best model is exported, pushed to the car and
# evaluated beside the expert on tracks it never saw; then the car drives
# itself in the web app until Ctrl-C. SERVE=0 stops after the evaluation.
DEMO ?= demo
DEMO_MINUTES ?= 1
# Training worlds, shape:seed: three floors (tiles, wood, concrete).
DEMO_WORLDS ?= oval:0 random:2 random:5
DEMO_TRIALS ?= 2
DEMO_EPOCHS ?= 6
SERVE ?= 1
DEMO_CAR = $(abspath $(DEMO))/car

demo: $(STAMP)
	@test -n "$(DEMO)" && rm -rf "$(DEMO)" && mkdir -p "$(DEMO)"
	@echo "== 1. the expert drives and records on $(DEMO_WORLDS) ($(DEMO_MINUTES) min each, real time, side by side)"
	@pids=""; for world in $(DEMO_WORLDS); do \
		$(BIN)/robot drive --sim --autodrive expert --record --noise 0.03 \
			--track $${world%%:*} --seed $${world##*:} --minutes $(DEMO_MINUTES) \
			--home $(DEMO_CAR) & pids="$$pids $$!"; \
	done; for pid in $$pids; do wait $$pid || exit 1; done
	@echo "== 2. bring the drives home"
	$(BIN)/deploy pull --car $(DEMO_CAR) --into $(DEMO)/drives \
		--robot-cmd $(abspath $(BIN))/robot
	@echo "== 3. search, report, export"
	$(BIN)/trainer search $(DEMO)/drives --project $(DEMO) --name demo \
		--space examples/demo-space.toml --trials $(DEMO_TRIALS) \
		--epochs $(DEMO_EPOCHS) --top-k 0
	$(BIN)/trainer report $(DEMO)/searches/demo
	$(BIN)/trainer export $(DEMO)/searches/demo --quantize both
	@echo "== 4. push the model to the car"
	$(BIN)/deploy push $(DEMO)/searches/demo --car $(DEMO_CAR) \
		--robot-cmd $(abspath $(BIN))/robot
	@echo "== 5. the car's model beside the expert: oval (trained on), figure8 and random:7 (never seen)"
	$(BIN)/trainer evaluate --sim --model $(DEMO_CAR)/models/current \
		--tracks oval,figure8,random:7 --minutes 1 \
		--gif $(DEMO)/evaluate.gif --json $(DEMO)/evaluate.json
	@if [ "$(SERVE)" != "0" ]; then \
		echo "== 6. the model drives the figure-eight: open the URL below, take over any time; Ctrl-C stops"; \
		$(BIN)/robot drive --sim --home $(DEMO_CAR) --mode pilot --track figure8; \
	fi

# Benchmarks: each prints its figures and the baseline it is compared with,
# as a ratio, in one run. The README quotes them with these commands.
bench: bench-sim bench-robot bench-web bench-deploy bench-trainer

bench-sim: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py

bench-robot: $(STAMP)
	$(BIN)/python benchmarks/bench_robot.py

bench-web: $(STAMP)
	$(BIN)/python benchmarks/bench_web.py --seconds 10

bench-deploy: $(STAMP)
	$(BIN)/python benchmarks/bench_deploy.py

bench-trainer: $(STAMP)
	$(BIN)/python benchmarks/bench_trainer.py --epochs 8

bench-early-stopping: $(STAMP)
	$(BIN)/python benchmarks/bench_early_stopping.py

clean:
	rm -rf $(VENV) build *.egg-info
